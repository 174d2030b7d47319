"""Registries of mmdet-odam.

Detector parts (heads, Odam-Train, OdamNMS, hooks, metrics, datasets) go into
MMDetection's own registries (``mmdet.registry``), so plain mmdet configs reach
them after ``custom_imports``. Explainers are not ``nn.Module`` parts of a detector,
so they get a registry of their own.
"""
from mmengine.registry import Registry

EXPLAINERS = Registry(
    'explainer', locations=['mmdet_odam.explainers'], scope='mmdet_odam')

__all__ = ['EXPLAINERS']
