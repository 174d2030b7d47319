"""mmdet-odam: ODAM explanations, Odam-Train and Odam-NMS for MMDetection 3.x.

Importing this package registers all of its modules into MMDetection's registries,
so a config only needs::

    custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)

Importing changes nothing else in the process (checkpoint loading stays
torch's and mmengine's own; see :mod:`mmdet_odam.utils.checkpoint`).
"""
from .version import __version__

from . import datasets  # noqa: F401  (registers modules)
from . import evaluation  # noqa: F401
from . import explainers  # noqa: F401
from . import engine  # noqa: F401
from . import models  # noqa: F401
from . import visualization  # noqa: F401

__all__ = ['__version__']
