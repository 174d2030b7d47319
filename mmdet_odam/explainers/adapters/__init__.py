"""Detector-family adapters: which feature map, which scalar per family."""
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.models.detectors import (DetectionTransformer, SingleStageDetector,
                                    TwoStageDetector)

from .base import (ATTRIBUTES, DetectorAdapter, ForwardState, LevelGradients,
                   outward_extents)
from .dense import DenseHeadAdapter
from .detr import DETRAdapter
from .two_stage import TwoStageAdapter


def build_adapter(model, feature: str = 'neck',
                  score_target: str = 'score') -> DetectorAdapter:
    """Pick the adapter of a detector's family.

    Raises:
        TypeError: For detector families without an adapter.
        ValueError: For a feature name the family does not have.
    """
    if isinstance(model, DetectionTransformer):
        return DETRAdapter(model, feature, score_target)
    if isinstance(model, TwoStageDetector):
        return TwoStageAdapter(model, feature, score_target)
    if isinstance(model, SingleStageDetector) and isinstance(
            model.bbox_head, BaseDenseHead):
        return DenseHeadAdapter(model, feature, score_target)
    raise TypeError(f'no ODAM adapter for {type(model).__name__}; supported: '
                    'single-stage dense heads, two-stage R-CNNs, DETR')


__all__ = ['ATTRIBUTES', 'DetectorAdapter', 'ForwardState', 'LevelGradients',
           'DenseHeadAdapter', 'TwoStageAdapter', 'DETRAdapter',
           'build_adapter', 'outward_extents']
