from .explain import build_explainer, explain

__all__ = ['explain', 'build_explainer']
