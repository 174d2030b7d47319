"""Detector-family adapters: which feature map, which scalar per family.

Each adapter module registers the head classes it follows
(:mod:`.registry`); :func:`adapter_class` resolves a detector along its head's
class hierarchy.
"""
from .base import (ATTRIBUTES, DetectorAdapter, ForwardState, LevelGradients,
                   outward_extents)
from .cascade import CascadeAdapter
from .dense import DenseHeadAdapter
from .deformable_detr import DeformableDETRAdapter
from .dense_families import (GFLAdapter, RTMDetAdapter, RTMDetSepBNAdapter,
                             YOLOXAdapter)
from .detr import DETRAdapter
from .registry import adapter_class, register_adapter, supported_families
from .two_stage import TwoStageAdapter


def build_adapter(model, feature: str = 'neck',
                  score_target: str = 'score') -> DetectorAdapter:
    """Pick the adapter of a detector's family (:func:`adapter_class`).

    Raises:
        TypeError: For detector families without an adapter.
        ValueError: For a feature name the family does not have.
    """
    return adapter_class(model)(model, feature, score_target)


__all__ = ['ATTRIBUTES', 'DetectorAdapter', 'ForwardState', 'LevelGradients',
           'DenseHeadAdapter', 'GFLAdapter', 'RTMDetAdapter',
           'RTMDetSepBNAdapter', 'YOLOXAdapter', 'TwoStageAdapter',
           'CascadeAdapter', 'DETRAdapter', 'DeformableDETRAdapter',
           'adapter_class', 'build_adapter', 'register_adapter',
           'supported_families', 'outward_extents']
