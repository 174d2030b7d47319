"""Adapter for two-stage detectors with a ``StandardRoIHead`` (Faster R-CNN).

Detections come from the RoI head's own ``predict_bbox``, run on a private
copy of the RoI head (sharing its weights) whose ``multiclass_nms`` also
returns the kept indices (:func:`track_rcnn_candidates`), so each detection
knows its (RoI, class) candidate and nothing another thread uses changes.

Scalars: ``score`` = softmax probability of the detected class (``logit``: its
logit); box extents from the class-specific deltas decoded on the RoI with the
head's ``bbox_coder``. Features: ``'neck'`` (the FPN level RoIAlign pooled the
RoI from), ``'backbone'``, or ``'roi'`` (the pooled RoI features themselves:
one batched backward, maps pasted into the RoI box as App. A.5.3).
``score_target='mask'`` (detectors with a mask head, Mask R-CNN): the
``score`` column is the mean of the mask head's logits of the detected class
over its output grid (28 x 28), predicted as MMDetection does on the
detection's final box (input pixels, clipped to the image); that box is a
constant, as RoIAlign is not differentiable in its boxes.

Batched exact path on the neck: RoIAlign (average pooling) is linear in the
features, so the gradient on the RoI's level is RoIAlign's adjoint applied to
the gradient on the pooled RoI features. One backward through the box head
gives the pooled gradients of every (detection, attribute) pair; the adjoint,
taken from the extractor's own RoIAlign backward on a window of the level
that holds every cell the RoI reads (:func:`roi_windows`,
:func:`roi_align_adjoint`), carries them to the level. Each pair's gradient
is that local window, never a full-size map.
"""
from contextlib import contextmanager
from typing import List, Optional, Sequence, Tuple

import torch
from mmcv.ops import RoIAlign
from mmdet.models.detectors import TwoStageDetector
from mmdet.models.layers import multiclass_nms
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.roi_heads.bbox_heads import BBoxHead
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet.structures.bbox import bbox2roi
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ...utils.isolation import bound_with_globals, shared_weights_copy
from .registry import overridden, register_adapter
from .strides import prior_strides
from .base import (ATTRIBUTES, DetectorAdapter, ForwardState, LevelGradients,
                   outward_extents)


@contextmanager
def track_rcnn_candidates(bbox_head, records: List[Tensor],
                          nms_inputs: Optional[list] = None):
    """Record the kept (RoI * num_classes + class) indices of each image.

    ``bbox_head`` must be a private copy (:func:`~mmdet_odam.utils.isolation.
    shared_weights_copy`): inside the context its ``_predict_by_feat_single``
    is a copy of its class's method whose ``multiclass_nms`` also returns the
    kept indices; MMDetection's module is not touched. ``nms_inputs``, if
    given, receives each image's (boxes, scores, score_thr) given to NMS.
    """
    def recording_nms(*args, **kwargs):
        kwargs['return_inds'] = True
        dets, labels, inds = multiclass_nms(*args, **kwargs)
        records.append(inds)
        if nms_inputs is not None:
            nms_inputs.append(args[:3])
        return dets, labels

    bbox_head._predict_by_feat_single = bound_with_globals(
        bbox_head, '_predict_by_feat_single', multiclass_nms=recording_nms)
    try:
        yield
    finally:
        del bbox_head._predict_by_feat_single


#: Window sides are rounded up to a multiple of this many cells so that RoIs
#: of similar size share one batched piece (a few cells of zeros at most).
WINDOW_QUANTUM = 4


def roi_windows(rois: Tensor, layer: RoIAlign, map_size: Sequence[int],
                quantum: int = WINDOW_QUANTUM) -> Tuple[Tensor, Tensor]:
    """Windows of a level map holding every cell RoIAlign reads for each RoI.

    The samples of an RoI lie in ``[s, e]`` (its box in cells, shifted by -0.5
    when aligned); bilinear sampling reads rows ``floor(y)`` and
    ``floor(y) + 1``. The footprint ``[floor(s) - 1, floor(e) + 2]`` (one cell
    of slack each side for rounding) is clipped to the map, rounded up to
    ``quantum`` cells and moved inside the map. A window so placed either
    ends on the map's edge or keeps every sample at least one cell from its
    own edge, so RoIAlign's border clamping on the window is that on the
    map: the window's adjoint is exactly the map's, cropped.

    Args:
        rois (Tensor): (M, 5) RoIs (batch index, x1, y1, x2, y2) in input
            pixels.
        layer (RoIAlign): The level's RoI layer (scale, alignment).
        map_size (Sequence[int]): (H, W) of the level map.
        quantum (int): Window sides are multiples of it (or the map's side).

    Returns:
        tuple[Tensor, Tensor]: (y0, x0) offsets (M, 2) and (h, w) sizes
        (M, 2), long, every window inside the map.
    """
    shift = 0.5 if layer.aligned else 0.0
    # float64 keeps the footprint's floor() away from float32 rounding
    start = rois[:, [2, 1]].double() * layer.spatial_scale - shift
    end = torch.maximum(rois[:, [4, 3]].double() * layer.spatial_scale -
                        shift, start + 1)  # non-aligned RoIs are >= 1 cell
    limit = torch.as_tensor([int(map_size[0]), int(map_size[1])],
                            device=rois.device)
    first = (start.floor().long() - 1).clamp(min=0)
    first = torch.minimum(first, limit - 1)
    last = torch.minimum(end.floor().long() + 2, limit - 1).clamp(min=0)
    sizes = last - first + 1
    sizes = torch.minimum((sizes + quantum - 1) // quantum * quantum, limit)
    offsets = torch.minimum(first, limit - sizes)
    return offsets, sizes


def roi_align_adjoint(layer: RoIAlign, rois: Tensor, offsets: Tensor,
                      size: Sequence[int]) -> Tensor:
    """RoIAlign's adjoint for each RoI on its window, from RoIAlign itself.

    Runs ``layer`` on zero windows with one channel per output bin and the
    RoIs moved into window coordinates, and backpropagates the identity: the
    result holds, for every bin, the weights with which it reads each cell.

    Args:
        layer (RoIAlign): The level's RoI layer (``pool_mode='avg'``).
        rois (Tensor): (M, 5) RoIs in input pixels.
        offsets (Tensor): (y0, x0) of each RoI's window, (M, 2), from
            :func:`roi_windows` (the windows must hold the RoIs' footprints).
        size (Sequence[int]): (h, w) of all windows.

    Returns:
        Tensor: (M, P, h, w) with P = out_h * out_w: bin p of RoI m reads cell
        (i, j) of its window with weight ``out[m, p, i, j]``.
    """
    out_h, out_w = layer.output_size
    bins = out_h * out_w
    stride = 1.0 / layer.spatial_scale
    local = rois.detach().clone()
    local[:, 0] = torch.arange(len(rois), device=rois.device,
                               dtype=rois.dtype)
    shift = offsets.to(rois.dtype) * stride
    local[:, 1::2] -= shift[:, 1:2]  # x1, x2
    local[:, 2::2] -= shift[:, 0:1]  # y1, y2
    leaf = rois.new_zeros((len(rois), bins, *size), requires_grad=True)
    with torch.enable_grad():
        pooled = layer(leaf, local)
    identity = torch.eye(bins, dtype=rois.dtype, device=rois.device).view(
        1, bins, out_h, out_w).expand(len(rois), -1, -1, -1).contiguous()
    adjoint, = torch.autograd.grad(pooled, leaf, identity)
    return adjoint


def is_linear_roi_extractor(extractor: nn.Module) -> bool:
    """Whether :func:`roi_align_adjoint` reproduces ``extractor``:
    MMDetection's ``SingleRoIExtractor`` (one level per RoI, its own
    ``forward``) with mmcv ``RoIAlign`` average pooling (linear in the
    features) on every level."""
    return isinstance(extractor, SingleRoIExtractor) and \
        type(extractor).forward is SingleRoIExtractor.forward and all(
            type(layer) is RoIAlign and layer.pool_mode == 'avg' and
            not layer.use_torchvision for layer in extractor.roi_layers)


def roi_levels(extractor: SingleRoIExtractor, rois: Tensor) -> Tensor:
    """Level each RoI is pooled from, as ``SingleRoIExtractor.forward``
    picks it (``map_roi_levels``, its ``finest_scale``), (M, ) long."""
    if extractor.num_inputs == 1:
        return rois.new_zeros(len(rois), dtype=torch.long)
    return extractor.map_roi_levels(rois, extractor.num_inputs)


def rcnn_scalars(bbox_head: BBoxHead, cls_score: Tensor, bbox_pred: Tensor,
                 rois: Tensor, labels: Tensor, score_target: str) -> Tensor:
    """Scalars of RoI candidates from a box head's outputs.

    Args:
        bbox_head (BBoxHead): The head (its ``bbox_coder``, class-agnostic
            regression or not).
        cls_score (Tensor): Class logits (N, num_classes + 1).
        bbox_pred (Tensor): Deltas (N, 4) or (N, num_classes * 4).
        rois (Tensor): (N, 5) RoIs the deltas are decoded on.
        labels (Tensor): Each candidate's class (N, ).
        score_target (str): ``'logit'``: the class logit, else its softmax
            probability (the head's score).

    Returns:
        Tensor: (N, 5) score and outward box extents (input pixels, decoded
        without clipping to the image).
    """
    rows = torch.arange(len(labels), device=labels.device)
    if score_target == 'logit':
        score = cls_score[rows, labels]
    else:
        score = cls_score.softmax(-1)[rows, labels]
    size = bbox_head.bbox_coder.encode_size
    if not bbox_head.reg_class_agnostic:
        bbox_pred = bbox_pred.view(len(rows), -1, size)[rows, labels]
    boxes = bbox_head.bbox_coder.decode(rois[:, 1:], bbox_pred)
    return torch.cat([score[:, None], outward_extents(boxes)], dim=1)


def check_mask_target(model, feature: str) -> None:
    """Refuse ``score_target='mask'`` in one line where it does not exist."""
    roi_head = model.roi_head
    if not getattr(roi_head, 'with_mask', False):
        raise ValueError(f"score_target 'mask' needs a mask head; "
                         f'{type(model).__name__} has none')
    if feature == 'roi':
        raise ValueError("score_target 'mask' reads the mask head's own RoI "
                         "features: use feature 'neck' or 'backbone'")


def rescale_like_mask_head(bboxes: Tensor, meta: dict) -> Tensor:
    """Input-pixel boxes to the original image as MMDetection's mask head
    rescales them (divided by the repeated ``scale_factor``)."""
    factor = bboxes.new_tensor(meta['scale_factor']).repeat((1, 2))
    return bboxes / factor


def mean_mask_logits(roi_head, feats: Sequence[Tensor], boxes: Tensor,
                     labels: Tensor) -> Tensor:
    """Mean over the mask head's output grid of each box's class logits.

    Args:
        roi_head: A RoI head with a mask branch (``_mask_forward``).
        feats (Sequence[Tensor]): Neck outputs (B, C, H, W).
        boxes (Tensor): (N, 5) RoIs (batch index, x1, y1, x2, y2) in input
            pixels.
        labels (Tensor): Classes (N, ).

    Returns:
        Tensor: (N, ) mean logits of the mask of each box's class.
    """
    mask_preds = roi_head._mask_forward(tuple(feats), boxes)['mask_preds']
    channel = labels if mask_preds.shape[1] > 1 else torch.zeros_like(labels)
    rows = torch.arange(len(labels), device=labels.device)
    return mask_preds[rows, channel].flatten(1).mean(dim=1)


def mask_score_column(roi_head, feats: Sequence[Tensor], rois: Tensor,
                      scalars: Tensor, labels: Tensor,
                      img_shape: Sequence[int]) -> Tensor:
    """``scalars`` with the score column replaced by the mean mask logit
    (:func:`mean_mask_logits`) on each candidate's final box, the detached
    decoded box clipped to ``img_shape`` as MMDetection decodes it."""
    extents = scalars[:, 1:].detach()
    boxes = (extents * extents.new_tensor([-1., -1., 1., 1.]))
    boxes[:, 0::2] = boxes[:, 0::2].clamp(min=0, max=img_shape[1])
    boxes[:, 1::2] = boxes[:, 1::2].clamp(min=0, max=img_shape[0])
    mask_rois = torch.cat([rois[:, :1], boxes], dim=1)
    mask = mean_mask_logits(roi_head, feats, mask_rois, labels)
    return torch.cat([mask[:, None], scalars[:, 1:]], dim=1)


@register_adapter(StandardRoIHead)
class TwoStageAdapter(DetectorAdapter):
    """Faster R-CNN and other ``TwoStageDetector`` s with a standard RoI head."""

    features = ('neck', 'backbone', 'roi')
    score_targets = ('score', 'logit', 'mask')
    family = ('two-stage detectors with a StandardRoIHead and a standard '
              'BBoxHead (Faster / Mask R-CNN)')
    relies_on = ('predict_bbox', )
    detector_type = TwoStageDetector

    def __init__(self, model, feature: str = 'neck',
                 score_target: str = 'score') -> None:
        super().__init__(model, feature, score_target)
        if score_target == 'mask':
            check_mask_target(model, feature)

    @classmethod
    def unsupported_reason(cls, model, part, registered: type
                           ) -> Optional[str]:
        reason = super().unsupported_reason(model, part, registered)
        box_head = getattr(part, 'bbox_head', None)
        if reason is None and not isinstance(box_head, BBoxHead):
            reason = f'its bbox_head is a {type(box_head).__name__}, ' \
                'not a BBoxHead'
        elif reason is None and overridden(box_head, BBoxHead,
                                           ('_predict_by_feat_single', )):
            reason = f'{type(box_head).__name__} overrides ' \
                'BBoxHead._predict_by_feat_single'
        return reason

    def has_fast_path(self) -> bool:
        if self.score_target == 'mask':  # another RoI head: exact path
            return False
        if self.feature == 'roi':
            return True
        # neck: RoIAlign's adjoint (needs a linear, one-level-per-RoI pooling)
        return self.feature == 'neck' and self.model.with_neck and \
            is_linear_roi_extractor(self.model.roi_head.bbox_roi_extractor)

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
                # with a mask head MMDetection's NMS runs in input pixels
                results = private.predict_bbox(
                    detached, metas, proposals, roi_head.test_cfg,
                    rescale=not roi_head.with_mask)
            if roi_head.with_mask:
                for res, meta in zip(results, metas):
                    res.bboxes = rescale_like_mask_head(res.bboxes, meta)
        num_classes = roi_head.bbox_head.num_classes
        for res, inds in zip(results, records):
            res.cand_roi = inds // num_classes
        state = ForwardState(
            results=results, activations=leaves,
            strides=self.feature_strides(leaves) if leaves else [],
            extras=dict(feats=feats, proposals=proposals, metas=metas,
                        det_rois=[None] * len(results),
                        roi_feats=[None] * len(results)))
        for img_idx, res in enumerate(results):
            self.set_candidates(state, img_idx, res)
        return state

    def set_candidates(self, state: ForwardState, img_idx: int,
                       rows: InstanceData) -> None:
        """Also the candidates' RoIs (and, for ``'roi'``, their pooled
        features as leaves)."""
        state.results[img_idx] = rows
        boxes = state.extras['proposals'][img_idx].bboxes
        rois = bbox2roi([boxes[rows.cand_roi]])
        rois[:, 0] = img_idx
        state.extras['det_rois'][img_idx] = rois
        if self.feature == 'roi':
            extractor = self.model.roi_head.bbox_roi_extractor
            feats = tuple(f.detach() for f in
                          state.extras['feats'][:extractor.num_inputs])
            with torch.no_grad():
                pooled = extractor(feats, rois)
            state.extras['roi_feats'][img_idx] = pooled.requires_grad_()

    def candidate_locations(self, state: ForwardState,
                            img_idx: int) -> InstanceData:
        """Every proposal of the image (``cand_roi``)."""
        proposals = state.extras['proposals'][img_idx]
        return InstanceData(cand_roi=torch.arange(
            len(proposals), device=proposals.bboxes.device))

    def pre_nms_candidates(self, state: ForwardState,
                           img_idx: int) -> InstanceData:
        """Every (proposal, class) whose softmax score passes the RoI head's
        ``score_thr``: what its ``multiclass_nms`` receives."""
        from ..candidates import describe_candidates
        roi_head = self.model.roi_head
        extractor = roi_head.bbox_roi_extractor
        proposals = state.extras['proposals'][img_idx]
        rois = bbox2roi([proposals.bboxes])
        with torch.no_grad():
            feats = tuple(f.detach() for f in
                          state.extras['feats'][:extractor.num_inputs])
            cls_score, _ = roi_head.bbox_head(extractor(feats, rois))
            scores = cls_score.softmax(-1)[:, :-1]
        roi, label = (scores > roi_head.test_cfg.score_thr).nonzero().unbind(1)
        return describe_candidates(
            self, state, img_idx, InstanceData(cand_roi=roi, labels=label))

    def _scalars_from_roi_feats(self, roi_feats: Tensor, rois: Tensor,
                                labels: Tensor) -> Tensor:
        bbox_head = self.model.roi_head.bbox_head
        cls_score, bbox_pred = bbox_head(roi_feats)
        return rcnn_scalars(bbox_head, cls_score, bbox_pred, rois, labels,
                            self.score_target)

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
        scalars = self._scalars_from_roi_feats(roi_feats, rois, labels)
        if self.score_target == 'mask':
            scalars = mask_score_column(
                roi_head, state.extras['feats'], rois, scalars, labels,
                state.extras['metas'][img_idx]['img_shape'])
        return scalars

    def candidate_scalars_on_inputs(self, inputs: Tensor,
                                    state: ForwardState, img_idx: int,
                                    det_ids: Sequence[int]) -> Tensor:
        """See the base class: each detection's own RoI (proposal) stays
        fixed and the box head reads it on row k's features, as
        :meth:`candidate_scalars` does on the original ones."""
        extractor = self.model.roi_head.bbox_roi_extractor
        ids = torch.as_tensor(list(det_ids), dtype=torch.long,
                              device=state.results[img_idx].labels.device)
        if len(ids) != len(inputs):
            raise ValueError(f'{len(inputs)} inputs for {len(ids)} '
                             'candidates')
        rois = state.extras['det_rois'][img_idx][ids].clone()
        rois[:, 0] = torch.arange(len(ids), device=rois.device)
        feats = self.model.extract_feat(inputs)
        roi_feats = extractor(feats[:extractor.num_inputs],
                              rois.type_as(feats[0]))
        return self._scalars_from_roi_feats(
            roi_feats, rois, state.results[img_idx].labels[ids])

    def _pooled_gradients(self, roi_feats: Tensor, rois: Tensor,
                          labels: Tensor, attr_ids: Sequence[int]
                          ) -> Tuple[Tensor, Tensor, Tensor]:
        """dY/d(pooled RoI features) of every (attribute, detection) pair.

        The box head treats RoIs as independent rows, so one backward of the
        sum of each copy's own scalar gives every per-pair gradient exactly.

        Args:
            roi_feats (Tensor): Pooled features of D detections (D, C, h, w).
            rois (Tensor): Their RoIs (D, 5).
            labels (Tensor): Their classes (D, ).
            attr_ids (Sequence[int]): T attributes.

        Returns:
            tuple[Tensor, Tensor, Tensor]: Gradients (T * D, C, h, w),
            attribute-major (row t * D + d), each row's attribute (T * D, ),
            and the repeated features (T * D, C, h, w).
        """
        copies = len(attr_ids)
        leaf = roi_feats.detach().repeat(copies, 1, 1, 1).requires_grad_()
        scalars = self._scalars_from_roi_feats(
            leaf, rois.repeat(copies, 1), labels.repeat(copies))
        own = torch.as_tensor(list(attr_ids), device=leaf.device)
        own = own.repeat_interleave(len(rois))
        grad, = torch.autograd.grad(
            scalars[torch.arange(len(leaf), device=leaf.device), own].sum(),
            leaf)
        return grad, own, leaf.detach()

    def fast_gradients(self, state: ForwardState, img_idx: int,
                       det_ids: Sequence[int], attr_ids: Sequence[int]
                       ) -> Optional[List[LevelGradients]]:
        """Every (detection, attribute) gradient from one box-head backward.

        ``'roi'``: the pooled-feature gradients themselves. ``'neck'``: those
        carried to each RoI's FPN level by RoIAlign's adjoint, one window per
        pair (:meth:`_level_windows`); exact, as RoIAlign is linear.
        """
        if not self.has_fast_path():
            return None
        labels_all = state.results[img_idx].labels
        det_ids = torch.as_tensor(det_ids, dtype=torch.long,
                                  device=labels_all.device)
        rois = state.extras['det_rois'][img_idx][det_ids]
        labels = labels_all[det_ids]
        if self.feature == 'neck':
            return self._level_windows(state, det_ids, rois, labels, attr_ids)
        roi_feats = state.extras['roi_feats'][img_idx][det_ids]
        grad, own, leaf = self._pooled_gradients(roi_feats, rois, labels,
                                                 attr_ids)
        copies = len(attr_ids)
        pairs = det_ids.repeat(copies) * len(ATTRIBUTES) + own
        return [LevelGradients(
            level=-1, grads=grad,
            offsets=torch.zeros((len(leaf), 2), dtype=torch.long,
                                device=leaf.device),
            pair_index=pairs, activations=leaf,
            roi_boxes=rois.repeat(copies, 1)[:, 1:])]

    def _level_windows(self, state: ForwardState, det_ids: Tensor,
                       rois: Tensor, labels: Tensor, attr_ids: Sequence[int]
                       ) -> List[LevelGradients]:
        """Gradients on the RoIs' FPN levels as local windows.

        Pooled features of the D detections are re-extracted (no graph) by
        the model's ``bbox_roi_extractor``; :meth:`_pooled_gradients` gives
        their T * D gradients ``g``; for every level and window size the
        adjoint ``A`` of each RoI (:func:`roi_align_adjoint`, shared by its T
        attributes) turns them into ``sum_p g[c, p] * A[p, i, j]``.

        Returns:
            list[LevelGradients]: One piece per (level, window size), grads
            (D_g * T, C, h, w) with (y0, x0) offsets on the level grid.
        """
        extractor = self.model.roi_head.bbox_roi_extractor
        feats = tuple(f.detach() for f in
                      state.extras['feats'][:extractor.num_inputs])
        rois = rois.type_as(feats[0])  # as the extractor casts them
        with torch.no_grad():
            pooled = extractor(feats, rois)
        grad, _, _ = self._pooled_gradients(pooled, rois, labels, attr_ids)
        copies, num_dets = len(attr_ids), len(det_ids)
        # (T, D, C, P): the attributes of one detection share its adjoint
        grad = grad.view(copies, num_dets, grad.shape[1], -1)
        attrs = torch.as_tensor(list(attr_ids), device=det_ids.device)
        levels = roi_levels(extractor, rois)
        out = []
        for level in levels.unique().tolist():
            sel = (levels == level).nonzero()[:, 0]
            layer = extractor.roi_layers[level]
            offsets, sizes = roi_windows(rois[sel], layer,
                                         feats[level].shape[-2:])
            keys, group_of = torch.unique(sizes, dim=0, return_inverse=True)
            for key, (h, w) in enumerate(keys.tolist()):
                part = (group_of == key).nonzero()[:, 0]
                members = sel[part]
                adjoint = roi_align_adjoint(layer, rois[members],
                                            offsets[part], (h, w))
                windows = torch.einsum(
                    'tdcp,dpq->dtcq', grad[:, members],
                    adjoint.flatten(2)).reshape(-1, grad.shape[2], h, w)
                # rows d * T + t: detection-major
                out.append(LevelGradients(
                    level=level, grads=windows,
                    offsets=offsets[part].repeat_interleave(copies, dim=0),
                    pair_index=(det_ids[members, None] * len(ATTRIBUTES) +
                                attrs[None]).flatten()))
        return out

    def exact_gradients(self, state: ForwardState, img_idx: int,
                        det_ids: Sequence[int], attr_ids: Sequence[int]
                        ) -> List[LevelGradients]:
        if self.feature == 'roi':  # the batched path is already exact
            return self.fast_gradients(state, img_idx, det_ids, attr_ids)
        # 'neck' too, but method='exact' asks for the one-call-per-pair path
        return super().exact_gradients(state, img_idx, det_ids, attr_ids)
