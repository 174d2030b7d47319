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
through what they pool.) Batched path (neck, linear RoI extractors): every
path from the map to a scalar passes through some stage's RoIAlign, so one
backward to every stage's pooled features (RoI chain included) and each
stage's RoIAlign adjoint give the exact gradient (:meth:`CascadeAdapter.
fast_gradients`); ``method='exact'`` keeps one autograd call per pair.
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.detectors import TwoStageDetector
from mmdet.models.roi_heads import CascadeRoIHead
from mmdet.models.roi_heads.bbox_heads import BBoxHead
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor

from ...utils.isolation import shared_weights_copy
from .base import ATTRIBUTES, ForwardState, LevelGradients
from .registry import overridden, register_adapter
from .two_stage import (TwoStageAdapter, is_linear_roi_extractor,
                        rcnn_scalars, rescale_like_mask_head,
                        roi_align_adjoint, roi_levels, roi_windows,
                        track_rcnn_candidates)


def merged_windows(pieces: Dict[Tuple[int, int], list],
                   pairs: List[int]) -> List[LevelGradients]:
    """Sum each (row, level)'s windows on their union window; one padded
    piece per level.

    Args:
        pieces (dict): (row, level) -> list of (y0, x0, window (C, h, w)).
        pairs (list[int]): Pair index of each row.

    Returns:
        list[LevelGradients]: Per level, windows (M, C, H, W) padded below /
        right to the largest union on that level, with their offsets.
    """
    by_level: Dict[int, list] = {}
    for (row, level), parts in sorted(pieces.items()):
        top = min(y0 for y0, _, _ in parts)
        left = min(x0 for _, x0, _ in parts)
        bottom = max(y0 + win.shape[-2] for y0, _, win in parts)
        right = max(x0 + win.shape[-1] for _, x0, win in parts)
        union = parts[0][2].new_zeros(
            (parts[0][2].shape[0], bottom - top, right - left))
        for y0, x0, win in parts:
            union[:, y0 - top:y0 - top + win.shape[-2],
                  x0 - left:x0 - left + win.shape[-1]] += win
        by_level.setdefault(level, []).append((pairs[row], top, left, union))
    out = []
    for level, items in sorted(by_level.items()):
        height = max(win.shape[-2] for *_, win in items)
        width = max(win.shape[-1] for *_, win in items)
        grads = items[0][3].new_zeros(
            (len(items), items[0][3].shape[0], height, width))
        for k, (_, _, _, win) in enumerate(items):
            grads[k, :, :win.shape[-2], :win.shape[-1]] = win
        out.append(LevelGradients(
            level=level, grads=grads,
            offsets=torch.tensor([[top, left] for _, top, left, _ in items],
                                 dtype=torch.long, device=grads.device),
            pair_index=torch.tensor([pair for pair, *_ in items],
                                    device=grads.device)))
    return out


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
        # RoIAlign's adjoint per stage, on every stage's FPN level
        return self.feature == 'neck' and self.model.with_neck and all(
            is_linear_roi_extractor(extractor)
            for extractor in self.model.roi_head.bbox_roi_extractor)

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

        def pool(stage: int, rois: Tensor) -> Tensor:
            extractor = roi_head.bbox_roi_extractor[stage]
            return extractor(feats[:extractor.num_inputs], rois)

        return self._chain_scalars(
            state.extras['stage_rois'][0][img_idx][res.cand_roi], res.labels,
            state.extras['metas'][img_idx], pool)

    def _chain_scalars(self, rois: Tensor, labels: Tensor, meta: dict,
                       pool: Callable[[int, Tensor], Tensor]) -> Tensor:
        """Scalars (N, 5) of N candidates from their proposals (N, 5), each
        stage's RoI features given by ``pool(stage, rois)``."""
        roi_head = self.model.roi_head
        logits_sum = 0
        for stage in range(roi_head.num_stages):
            bbox_head = roi_head.bbox_head[stage]
            cls_score, bbox_pred = bbox_head(pool(stage, rois))
            logits_sum = logits_sum + cls_score  # summed in stage order
            if stage < roi_head.num_stages - 1:  # as CascadeRoIHead refines
                refined = bbox_head.regress_by_class(
                    rois[:, 1:], cls_score[:, :-1].argmax(dim=1), bbox_pred,
                    meta)
                rois = torch.cat([rois[:, :1], get_box_tensor(refined)], 1)
        return rcnn_scalars(roi_head.bbox_head[-1],
                            logits_sum / float(roi_head.num_stages),
                            bbox_pred, rois, labels, self.score_target)

    def fast_gradients(self, state: ForwardState, img_idx: int,
                       det_ids: Sequence[int], attr_ids: Sequence[int]
                       ) -> Optional[List[LevelGradients]]:
        """Every (detection, attribute) gradient from one backward.

        Every path from the map to a scalar runs through some stage's
        RoIAlign (the RoIs enter RoIAlign without a gradient), so with each
        stage's pooled features as leaves one backward of the T * D copies
        gives dY/d(pooled_s) of every pair and stage, RoI chain included;
        each stage's RoIAlign adjoint (:func:`~.two_stage.roi_align_adjoint`)
        carries it to the RoI's level, and a pair's windows of one level
        (from several stages) are summed on their union window: exact.
        """
        if not self.has_fast_path():
            return None
        roi_head = self.model.roi_head
        res = state.results[img_idx]
        det_ids = torch.as_tensor(det_ids, dtype=torch.long,
                                  device=res.labels.device)
        copies, num_dets = len(attr_ids), len(det_ids)
        feats = tuple(f.detach() for f in state.extras['feats'])
        leaves: List[Tensor] = []
        pooled_rois: List[Tensor] = []

        def pool(stage: int, rois: Tensor) -> Tensor:
            extractor = roi_head.bbox_roi_extractor[stage]
            rois = rois.detach().type_as(feats[0])
            with torch.no_grad():
                pooled = extractor(feats[:extractor.num_inputs], rois)
            leaves.append(pooled.requires_grad_())
            pooled_rois.append(rois)
            return pooled

        own = torch.as_tensor(list(attr_ids), device=det_ids.device)
        own = own.repeat_interleave(num_dets)  # row t * D + d
        with torch.enable_grad():
            proposals = state.extras['stage_rois'][0][img_idx][
                res.cand_roi[det_ids]]
            scalars = self._chain_scalars(
                proposals.repeat(copies, 1), res.labels[det_ids].repeat(
                    copies), state.extras['metas'][img_idx], pool)
            grads = torch.autograd.grad(
                scalars[torch.arange(len(own), device=own.device),
                        own].sum(), leaves, allow_unused=True)
        pairs = (det_ids.repeat(copies) * len(ATTRIBUTES) + own).tolist()
        # (row, level) -> [(y0, x0, window)] over stages
        pieces: dict = {}
        for stage, (grad, rois) in enumerate(zip(grads, pooled_rois)):
            if grad is None:
                continue
            extractor = roi_head.bbox_roi_extractor[stage]
            rois = rois[:num_dets]  # the T copies of a detection share it
            levels = roi_levels(extractor, rois)
            for level in levels.unique().tolist():
                sel = (levels == level).nonzero()[:, 0]
                layer = extractor.roi_layers[level]
                offsets, sizes = roi_windows(rois[sel], layer,
                                             feats[level].shape[-2:])
                for k, det in enumerate(sel.tolist()):
                    (y0, x0), (h, w) = offsets[k].tolist(), sizes[k].tolist()
                    adjoint = roi_align_adjoint(
                        layer, rois[det:det + 1], offsets[k:k + 1], (h, w))
                    for row in range(det, len(own), num_dets):
                        window = grad[row].flatten(1) @ adjoint[0].flatten(1)
                        pieces.setdefault((row, level), []).append(
                            (y0, x0, window.view(-1, h, w)))
        return merged_windows(pieces, pairs)
    def set_candidates(self, state: ForwardState, img_idx: int,
                       rows: InstanceData) -> None:
        # nothing precomputed per candidate: the scalars read ``cand_roi``
        state.results[img_idx] = rows

    def num_classes(self) -> int:
        return self.model.roi_head.bbox_head[-1].num_classes

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
