from .detector import init_explained_detector
from .explain import build_explainer, explain

__all__ = ['explain', 'build_explainer', 'init_explained_detector']
