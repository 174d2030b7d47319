"""Adapter for two-stage detectors with a ``StandardRoIHead`` (Faster R-CNN).

Detections come from the RoI head's own ``predict_bbox``, run on a private
copy of the RoI head (sharing its weights) whose ``multiclass_nms`` also
returns the kept indices (:func:`track_rcnn_candidates`), so each detection
knows its (RoI, class) candidate and nothing another thread uses changes.

Scalars: ``score`` = softmax probability of the detected class (``logit``: its
logit); box extents from the class-specific deltas decoded on the RoI with the
head's ``bbox_coder``. Features: ``'neck'`` (the FPN level RoIAlign pooled the
RoI from; exact path, one cheap autograd call per detection and attribute since
only the detected RoIs are re-run), ``'backbone'``, or ``'roi'`` (the pooled
RoI features themselves: one batched backward, maps pasted into the RoI box as
App. A.5.3).
"""
from contextlib import contextmanager
from typing import List, Sequence

import torch
from mmdet.models.layers import multiclass_nms
from mmdet.structures.bbox import bbox2roi
from torch import Tensor

from ...utils.isolation import bound_with_globals, shared_weights_copy
from .strides import prior_strides
from .base import (ATTRIBUTES, DetectorAdapter, ForwardState, LevelGradients,
                   outward_extents)


@contextmanager
def track_rcnn_candidates(bbox_head, records: List[Tensor]):
    """Record the kept (RoI * num_classes + class) indices of each image.

    ``bbox_head`` must be a private copy (:func:`~mmdet_odam.utils.isolation.
    shared_weights_copy`): inside the context its ``_predict_by_feat_single``
    is a copy of its class's method whose ``multiclass_nms`` also returns the
    kept indices; MMDetection's module is not touched.
    """
    def recording_nms(*args, **kwargs):
        kwargs['return_inds'] = True
        dets, labels, inds = multiclass_nms(*args, **kwargs)
        records.append(inds)
        return dets, labels

    bbox_head._predict_by_feat_single = bound_with_globals(
        bbox_head, '_predict_by_feat_single', multiclass_nms=recording_nms)
    try:
        yield
    finally:
        del bbox_head._predict_by_feat_single


class TwoStageAdapter(DetectorAdapter):
    """Faster R-CNN and other ``TwoStageDetector`` s with a standard RoI head."""

    features = ('neck', 'backbone', 'roi')

    def has_fast_path(self) -> bool:
        return self.feature == 'roi'

    def neck_strides(self) -> List[int]:
        # the RPN's anchors cover every neck level (RoIAlign reads a subset)
        return prior_strides(self.model.rpn_head.prior_generator)

    def forward(self, inputs: Tensor, data_samples,
                keep_graph: bool = True) -> ForwardState:
        model = self.model
        roi_head = model.roi_head
        metas = [ds.metainfo for ds in data_samples]
        if self.feature == 'roi':
            with torch.no_grad():
                feats = model.extract_feat(inputs)
            leaves = []
        else:
            leaves, feats = self.backbone_or_neck_leaves(inputs)
        with torch.no_grad():
            detached = tuple(f.detach() for f in feats)
            proposals = model.rpn_head.predict(detached, data_samples,
                                               rescale=False)
            records: List[Tensor] = []
            private = shared_weights_copy(roi_head)
            with track_rcnn_candidates(private.bbox_head, records):
                results = private.predict_bbox(
                    detached, metas, proposals, roi_head.test_cfg,
                    rescale=True)
        num_classes = roi_head.bbox_head.num_classes
        det_rois = []
        for img_idx, (res, inds) in enumerate(zip(results, records)):
            boxes = proposals[img_idx].bboxes
            rois = bbox2roi([boxes[inds // num_classes]])
            rois[:, 0] = img_idx
            det_rois.append(rois)
            res.cand_roi = inds // num_classes
        extras = dict(feats=feats, det_rois=det_rois)
        strides = self.feature_strides(leaves) if leaves else []
        if self.feature == 'roi':
            extras['roi_feats'] = []
            for rois in det_rois:
                with torch.no_grad():
                    pooled = roi_head.bbox_roi_extractor(
                        detached[:roi_head.bbox_roi_extractor.num_inputs],
                        rois)
                extras['roi_feats'].append(pooled.requires_grad_())
        return ForwardState(results=results, activations=leaves,
                            strides=strides, extras=extras)

    def _scalars_from_roi_feats(self, roi_feats: Tensor, rois: Tensor,
                                labels: Tensor) -> Tensor:
        bbox_head = self.model.roi_head.bbox_head
        cls_score, bbox_pred = bbox_head(roi_feats)
        rows = torch.arange(len(labels), device=labels.device)
        if self.score_target == 'logit':
            score = cls_score[rows, labels]
        else:
            score = cls_score.softmax(-1)[rows, labels]
        size = bbox_head.bbox_coder.encode_size
        if not bbox_head.reg_class_agnostic:
            bbox_pred = bbox_pred.view(len(rows), -1, size)[rows, labels]
        boxes = bbox_head.bbox_coder.decode(rois[:, 1:], bbox_pred)
        return torch.cat([score[:, None], outward_extents(boxes)], dim=1)

    def candidate_scalars(self, state: ForwardState, img_idx: int) -> Tensor:
        roi_head = self.model.roi_head
        rois = state.extras['det_rois'][img_idx]
        labels = state.results[img_idx].labels
        if self.feature == 'roi':
            roi_feats = state.extras['roi_feats'][img_idx]
        else:
            feats = state.extras['feats']
            roi_feats = roi_head.bbox_roi_extractor(
                feats[:roi_head.bbox_roi_extractor.num_inputs], rois)
        return self._scalars_from_roi_feats(roi_feats, rois, labels)

    def fast_gradients(self, state: ForwardState, img_idx: int,
                       det_ids: Sequence[int], attr_ids: Sequence[int]):
        """RoI features: RoIs are independent, so one backward of the sum of
        each copy's own scalar gives every per-detection gradient exactly."""
        if self.feature != 'roi':
            return None
        det_ids = torch.as_tensor(det_ids, dtype=torch.long)
        roi_feats = state.extras['roi_feats'][img_idx].detach()[det_ids]
        rois = state.extras['det_rois'][img_idx][det_ids]
        labels = state.results[img_idx].labels[det_ids]
        copies = len(attr_ids)
        leaf = roi_feats.repeat(copies, 1, 1, 1).requires_grad_()
        scalars = self._scalars_from_roi_feats(
            leaf, rois.repeat(copies, 1), labels.repeat(copies))
        own = torch.as_tensor(list(attr_ids)).repeat_interleave(len(det_ids))
        grad, = torch.autograd.grad(
            scalars[torch.arange(len(leaf)), own].sum(), leaf)
        pairs = det_ids.repeat(copies) * len(ATTRIBUTES) + own
        return [LevelGradients(
            level=-1, grads=grad, offsets=torch.zeros((len(leaf), 2),
                                                      dtype=torch.long),
            pair_index=pairs, activations=leaf.detach(),
            roi_boxes=rois.repeat(copies, 1)[:, 1:])]

    def exact_gradients(self, state: ForwardState, img_idx: int,
                        det_ids: Sequence[int], attr_ids: Sequence[int]
                        ) -> List[LevelGradients]:
        if self.feature == 'roi':  # the batched path is already exact
            return self.fast_gradients(state, img_idx, det_ids, attr_ids)
        return super().exact_gradients(state, img_idx, det_ids, attr_ids)
