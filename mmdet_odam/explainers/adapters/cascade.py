"""Adapter for Cascade R-CNN (``CascadeRoIHead`` with standard box heads).

Detections come from the RoI head's own ``predict_bbox`` on a private copy
whose ``_bbox_forward`` records the RoIs each stage pooled (the proposals,
then each stage's refinement by ``regress_by_class``) and whose last box
head's NMS returns the kept (RoI, class) indices
(:func:`~.two_stage.track_rcnn_candidates`).

Scalars of a detection from RoI ``r`` and class ``c``, as MMDetection computes
them: ``score`` = softmax of the stage-averaged class logits
``mean_s head_s(RoIAlign(A, roi_s(r)))`` at ``c`` (``logit``: that averaged
logit); box extents = the last stage's class-``c`` deltas decoded on the last
stage's RoI. Every stage's RoIAlign reads the explained map, and each
stage's RoI is computed again from the proposal with the graph kept
(``regress_by_class`` of the previous stage's deltas at its arg-max class), so
the box extents also follow how earlier stages moved the RoI: the gradient is
that of MMDetection's own ``_refine_roi`` and decoding under autograd. (mmcv's
RoIAlign has no gradient in its boxes, so the scores depend on the RoIs only
through what they pool.) Hence only the exact path (one autograd call per
pair): RoIAlign's adjoint per stage would miss the RoI chain of the box.
"""
from typing import List, Optional

import torch
from mmdet.models.detectors import TwoStageDetector
from mmdet.models.roi_heads import CascadeRoIHead
from mmdet.models.roi_heads.bbox_heads import BBoxHead
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor

from ...utils.isolation import shared_weights_copy
from .base import DetectorAdapter, ForwardState
from .registry import overridden, register_adapter
from .two_stage import (TwoStageAdapter, rcnn_scalars, rescale_like_mask_head,
                        track_rcnn_candidates)


@register_adapter(CascadeRoIHead)
class CascadeAdapter(TwoStageAdapter):
    """Cascade R-CNN: stage-averaged class score, last stage's box."""

    features = ('neck', 'backbone')
    score_targets = ('score', 'logit')
    family = 'Cascade R-CNN (CascadeRoIHead with standard BBoxHeads)'
    relies_on = ('predict_bbox', '_refine_roi', '_bbox_forward')
    detector_type = TwoStageDetector

    @classmethod
    def unsupported_reason(cls, model, part, registered: type
                           ) -> Optional[str]:
        # the generic checks; each stage's box head is checked below
        reason = super(TwoStageAdapter, cls).unsupported_reason(
            model, part, registered)
        if reason is not None:
            return reason
        for stage, head in enumerate(part.bbox_head):
            if not isinstance(head, BBoxHead):
                return (f'its stage-{stage} bbox_head is a '
                        f'{type(head).__name__}, not a BBoxHead')
            changed = overridden(head, BBoxHead, (
                '_predict_by_feat_single', 'regress_by_class'))
            if changed:
                return (f'{type(head).__name__} overrides BBoxHead.'
                        f'{", ".join(changed)}')
            if head.custom_activation or head.custom_cls_channels:
                return (f'stage-{stage} {type(head).__name__} has a custom '
                        'class activation')
        return None

    def has_fast_path(self) -> bool:
        return False

    def forward(self, inputs: Tensor, data_samples,
                keep_graph: bool = True) -> ForwardState:
        model = self.model
        roi_head = model.roi_head
        metas = [ds.metainfo for ds in data_samples]
        leaves, feats = self.backbone_or_neck_leaves(inputs)
        with torch.no_grad():
            detached = tuple(f.detach() for f in feats)
            proposals = model.rpn_head.predict(detached, data_samples,
                                               rescale=False)
            private = shared_weights_copy(roi_head)
            pooled_rois: List[Tensor] = []  # (M, 5) per stage, all images
            stage_forward = private._bbox_forward

            def recording_forward(stage, x, rois, **kwargs):
                pooled_rois.append(rois)
                return stage_forward(stage, x, rois, **kwargs)

            private._bbox_forward = recording_forward
            records: List[Tensor] = []
            nms_inputs: list = []
            with track_rcnn_candidates(private.bbox_head[-1], records,
                                       nms_inputs):
                results = private.predict_bbox(
                    detached, metas, proposals, roi_head.test_cfg,
                    rescale=not roi_head.with_mask)
        if len(records) != len(results):
            raise RuntimeError('could not track the Cascade R-CNN candidates '
                               '(an image without proposals?)')
        num_classes = roi_head.bbox_head[-1].num_classes
        # stage_rois[s][i]: the RoIs stage s pooled for image i, in order
        stage_rois = [[rois[rois[:, 0] == i] for i in range(len(metas))]
                      for rois in pooled_rois]
        for res, inds, meta in zip(results, records, metas):
            res.cand_roi = inds // num_classes
            if roi_head.with_mask:
                res.bboxes = rescale_like_mask_head(res.bboxes, meta)
        return ForwardState(
            results=results, activations=leaves,
            strides=self.feature_strides(leaves),
            extras=dict(feats=feats, stage_rois=stage_rois, metas=metas,
                        nms_inputs=nms_inputs))

    def candidate_scalars(self, state: ForwardState, img_idx: int) -> Tensor:
        roi_head = self.model.roi_head
        res = state.results[img_idx]
        feats = state.extras['feats']
        meta = state.extras['metas'][img_idx]
        rois = state.extras['stage_rois'][0][img_idx][res.cand_roi]
        logits_sum = 0
        for stage in range(roi_head.num_stages):
            extractor = roi_head.bbox_roi_extractor[stage]
            bbox_head = roi_head.bbox_head[stage]
            cls_score, bbox_pred = bbox_head(
                extractor(feats[:extractor.num_inputs], rois))
            logits_sum = logits_sum + cls_score  # summed in stage order
            if stage < roi_head.num_stages - 1:  # as CascadeRoIHead refines
                refined = bbox_head.regress_by_class(
                    rois[:, 1:], cls_score[:, :-1].argmax(dim=1), bbox_pred,
                    meta)
                rois = torch.cat([rois[:, :1], get_box_tensor(refined)], 1)
        return rcnn_scalars(roi_head.bbox_head[-1],
                            logits_sum / float(roi_head.num_stages),
                            bbox_pred, rois, res.labels, self.score_target)

    def candidate_locations(self, state: ForwardState,
                            img_idx: int) -> InstanceData:
        rois = state.extras['stage_rois'][-1][img_idx]
        return InstanceData(cand_roi=torch.arange(len(rois),
                                                  device=rois.device))

    def pre_nms_candidates(self, state: ForwardState,
                           img_idx: int) -> InstanceData:
        """The last stage's (RoI, class) pairs above the score threshold,
        as MMDetection's ``multiclass_nms`` received them."""
        boxes, scores, score_thr = state.extras['nms_inputs'][img_idx]
        num_classes = scores.shape[1] - 1
        boxes = boxes.reshape(len(scores), -1, 4).expand(
            -1, num_classes, 4) if boxes.shape[1] == 4 else \
            boxes.reshape(len(scores), num_classes, 4)
        roi, label = (scores[:, :-1] > score_thr).nonzero(as_tuple=True)
        bboxes = boxes[roi, label]
        if self.model.roi_head.with_mask:
            bboxes = rescale_like_mask_head(
                bboxes, state.extras['metas'][img_idx])
        return InstanceData(cand_roi=roi, labels=label,
                            scores=scores[roi, label], bboxes=bboxes)
