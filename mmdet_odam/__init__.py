"""mmdet-odam: ODAM explanations, Odam-Train and Odam-NMS for MMDetection 3.x.

Importing this package registers all of its modules into MMDetection's registries,
so a config only needs::

    custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
"""
from .utils import patch_checkpoint_loading
from .version import __version__

patch_checkpoint_loading()

from . import datasets  # noqa: E402,F401  (registers modules)
from . import evaluation  # noqa: E402,F401
from . import explainers  # noqa: E402,F401
from . import engine  # noqa: E402,F401
from . import models  # noqa: E402,F401

__all__ = ['__version__']
