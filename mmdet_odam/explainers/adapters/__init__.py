"""Detector-family adapters: which feature map, which scalar per family."""
from typing import Iterable, Type

from mmdet.models.dense_heads import DETRHead
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.models.detectors import (DetectionTransformer, SingleStageDetector,
                                    TwoStageDetector)
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.roi_heads.bbox_heads import BBoxHead

from .base import (ATTRIBUTES, DetectorAdapter, ForwardState, LevelGradients,
                   outward_extents)
from .dense import DenseHeadAdapter
from .detr import DETRAdapter
from .two_stage import TwoStageAdapter

# What each adapter relies on, in words (named by the error for other models).
SUPPORTED_FAMILIES = (
    'single-stage detectors whose dense head keeps BaseDenseHead\'s '
    'post-processing (FCOS, RetinaNet, ATSS, ...)',
    'two-stage detectors with a StandardRoIHead and a standard BBoxHead '
    '(Faster / Mask R-CNN)',
    'DETR with a DETRHead')


def _keeps(obj, base: type, names: Iterable[str]) -> bool:
    """Whether ``obj``'s class uses ``base``'s own methods ``names`` (the
    code paths an adapter hooks into), i.e. does not override them."""
    return all(getattr(type(obj), name, None) is getattr(base, name)
               for name in names)


def adapter_class(model) -> Type[DetectorAdapter]:
    """The adapter class of a detector's family, checked structurally.

    Dense heads must run ``BaseDenseHead``'s ``predict_by_feat`` and
    ``_predict_by_feat_single`` (where candidates are tagged; YOLOX, GFL,
    TOOD... override them); R-CNNs a ``StandardRoIHead`` whose ``BBoxHead``
    keeps ``_predict_by_feat_single`` (not Cascade R-CNN); DETR a plain
    ``DETRHead`` (not Deformable / Conditional DETR or DINO).

    Raises:
        TypeError: For any other detector, one line naming the detector, its
            head and the supported families.
    """
    head = getattr(model, 'bbox_head', None)
    if isinstance(model, DetectionTransformer):
        if isinstance(head, DETRHead) and _keeps(
                head, DETRHead, ('forward', 'predict_by_feat')):
            return DETRAdapter
    elif isinstance(model, TwoStageDetector):
        head = getattr(model, 'roi_head', None)
        box_head = getattr(head, 'bbox_head', None)
        if isinstance(head, StandardRoIHead) and \
                isinstance(box_head, BBoxHead) and \
                _keeps(box_head, BBoxHead, ('_predict_by_feat_single', )):
            return TwoStageAdapter
    elif isinstance(model, SingleStageDetector) and \
            isinstance(head, BaseDenseHead) and _keeps(
                head, BaseDenseHead,
                ('predict_by_feat', '_predict_by_feat_single')):
        return DenseHeadAdapter
    with_head = f' with {type(head).__name__}' if head is not None else ''
    raise TypeError(f'no ODAM adapter for {type(model).__name__}{with_head}; '
                    f'supported: {"; ".join(SUPPORTED_FAMILIES)}')


def build_adapter(model, feature: str = 'neck',
                  score_target: str = 'score') -> DetectorAdapter:
    """Pick the adapter of a detector's family (:func:`adapter_class`).

    Raises:
        TypeError: For detector families without an adapter.
        ValueError: For a feature name the family does not have.
    """
    return adapter_class(model)(model, feature, score_target)


__all__ = ['ATTRIBUTES', 'DetectorAdapter', 'ForwardState', 'LevelGradients',
           'DenseHeadAdapter', 'TwoStageAdapter', 'DETRAdapter',
           'SUPPORTED_FAMILIES', 'adapter_class', 'build_adapter',
           'outward_extents']
