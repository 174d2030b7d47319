"""Explain any candidate, not only the final detections.

A *selector* picks, for one image, the rows the explainer explains, after
the detector ran: each row is one of the detector's own candidates (the same
identity fields the final detections carry, e.g. ``cand_level``/``cand_index``
of a dense head, ``cand_roi`` of an R-CNN, ``cand_query`` of DETR) with a class
``labels`` that need not be the one the detector predicted there. Because the
adapters compute their scalars from exactly those fields, every map is the
map of that candidate and class, by the same code path as a detection's.

Selectors (paper Fig. 12 and App. A.5.2 use cases):

* :class:`FinalDetections`: the detections scoring at least ``score_thr``
  (what :func:`~mmdet_odam.apis.explain` does by default).
* :class:`SuppressedCandidates`: candidates the detector's NMS removed
  around a detection (same class, IoU above a threshold).
* :class:`MatchedCandidates`: for given boxes (e.g. ground-truth objects
  the detector missed) and classes, the best-matching candidate of that class
  anywhere in the detector, whatever its score.
* :class:`OtherClasses`: a detection's own candidate scored for other
  classes ("bed" vs "bench").

Every selected row carries ``bboxes`` (original-image pixels) and ``scores``
of that candidate for that class as the detector would report them,
``ref_index`` (the detection or given box it refers to) and ``ref_iou``
(IoU of its box with that reference box).
"""
from typing import Optional, Sequence, Union

import numpy as np
import torch
from mmdet.structures.bbox import HorizontalBoxes, bbox_overlaps, scale_boxes
from mmengine.structures import InstanceData
from torch import Tensor

from .adapters.base import DetectorAdapter, ForwardState

ArrayLike = Union[Tensor, np.ndarray, Sequence]


def original_boxes(input_boxes: Tensor, meta: dict) -> Tensor:
    """Input-image boxes mapped to the original image and clipped to it.

    Args:
        input_boxes (Tensor): (N, 4) x1, y1, x2, y2 on the network input.
        meta (dict): Image metainfo with ``scale_factor`` (w, h) and
            ``ori_shape``.

    Returns:
        Tensor: (N, 4) boxes in original-image pixels.
    """
    scale_w, scale_h = meta.get('scale_factor', (1., 1.))
    boxes = HorizontalBoxes(scale_boxes(input_boxes,
                                        (1 / scale_w, 1 / scale_h)))
    boxes.clip_(meta['ori_shape'][:2])
    return boxes.tensor


def describe_candidates(adapter: DetectorAdapter, state: ForwardState,
                        img_idx: int, rows: InstanceData) -> InstanceData:
    """``rows`` (identity fields and ``labels``) with the ``scores`` and
    ``bboxes`` the detector gives those candidates for those classes.

    The values come from the adapter's own scalars (no graph): the score as
    the detector ranks it (``score_target='score'``), the box decoded by the
    head's coder, mapped to original-image pixels.
    """
    rows = rows.clone()
    if len(rows) == 0:
        rows.scores = rows.labels.new_zeros((0, ), dtype=torch.float)
        rows.bboxes = rows.labels.new_zeros((0, 4), dtype=torch.float)
        return rows
    kept, kept_target = state.results[img_idx], adapter.score_target
    adapter.score_target = 'score'
    try:
        with torch.no_grad():
            adapter.set_candidates(state, img_idx, rows)
            scalars = adapter.candidate_scalars(state, img_idx)
    finally:
        adapter.set_candidates(state, img_idx, kept)
        adapter.score_target = kept_target
    input_boxes = scalars[:, 1:] * scalars.new_tensor([-1., -1., 1., 1.])
    rows.scores = scalars[:, 0].float()
    rows.bboxes = original_boxes(input_boxes.float(),
                                 state.extras['metas'][img_idx])
    return rows


def _as_list(value, name: str) -> Optional[list]:
    if value is None:
        return None
    values = [int(v) for v in np.atleast_1d(np.asarray(value))]
    if any(v < 0 for v in values):
        raise ValueError(f'{name} must be non-negative, got {values}')
    return values


def _labels_in_range(labels: Sequence[int], adapter: DetectorAdapter
                     ) -> None:
    num_classes = adapter.num_classes()
    bad = [c for c in labels if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f'class indices {bad} outside [0, {num_classes})')


class CandidateSelector:
    """Picks the candidates of one image to explain (see module doc)."""

    #: Rows' ``ref_index`` points at final detections, whose maps the rows'
    #: maps are then compared with (``ref_correlation``).
    refers_to_detections = False

    def check(self, adapter: DetectorAdapter) -> None:
        """One-line errors for options the detector cannot serve, before any
        map is computed (called once per batch)."""

    def select(self, adapter: DetectorAdapter, state: ForwardState,
               img_idx: int, score_thr: float) -> InstanceData:
        """The rows to explain, with ``bboxes``, ``scores``, ``labels``,
        identity fields, ``ref_index`` and ``ref_iou``."""
        raise NotImplementedError


def final_detections(state: ForwardState, img_idx: int,
                     score_thr: float) -> InstanceData:
    """The detections scoring at least ``score_thr`` (the rows a plain
    explanation returns, in the model's order)."""
    res = state.results[img_idx]
    return res[(res.scores >= score_thr).nonzero()[:, 0]]


class FinalDetections(CandidateSelector):
    """The final detections scoring at least ``score_thr`` (default)."""

    def select(self, adapter, state, img_idx, score_thr):
        rows = final_detections(state, img_idx, score_thr).clone()
        rows.ref_index = torch.arange(len(rows), device=rows.labels.device)
        rows.ref_iou = rows.scores.new_ones((len(rows), ))
        return rows


def _same_candidate(a: InstanceData, b: InstanceData, fields: Sequence[str]
                    ) -> Tensor:
    """(len(a), len(b)) whether rows are the same candidate and class."""
    same = a.labels[:, None] == b.labels[None]
    for name in fields:
        same &= a.get(name)[:, None] == b.get(name)[None]
    return same


def identity_fields(rows: InstanceData) -> list:
    """Names of the candidate identity fields rows carry (``cand_*``)."""
    return [k for k in rows.keys() if k.startswith('cand_')]


class SuppressedCandidates(CandidateSelector):
    """Candidates NMS removed around final detections.

    From the detector's own pre-NMS pool (after its score threshold and
    top-k), every candidate of a detection's class whose box overlaps that
    detection with IoU > ``iou_thr`` and that did not itself become a final
    detection; each is referred to the detection it overlaps most.

    Args:
        det_index (int | Sequence[int], optional): Which final detections
            (indices into those scoring >= ``score_thr``); default all.
        iou_thr (float): IoU above which a candidate counts as suppressed by
            the detection, in (0, 1].
        max_per_detection (int, optional): Keep only the highest-scoring
            ones per detection.
    """

    refers_to_detections = True

    def __init__(self, det_index: Union[int, Sequence[int], None] = None,
                 iou_thr: float = 0.5,
                 max_per_detection: Optional[int] = None) -> None:
        if not 0 < iou_thr <= 1:
            raise ValueError(f'iou_thr must be in (0, 1], got {iou_thr}')
        if max_per_detection is not None and max_per_detection < 1:
            raise ValueError('max_per_detection must be >= 1, got '
                             f'{max_per_detection}')
        self.det_index = _as_list(det_index, 'det_index')
        self.iou_thr = iou_thr
        self.max_per_detection = max_per_detection

    def check(self, adapter):
        # families without NMS refuse here, before any map
        if type(adapter).pre_nms_candidates is \
                DetectorAdapter.pre_nms_candidates:
            adapter.pre_nms_candidates(None, 0)

    def select(self, adapter, state, img_idx, score_thr):
        dets = final_detections(state, img_idx, score_thr)
        refs = _pick(dets, self.det_index, 'det_index')
        pool = adapter.pre_nms_candidates(state, img_idx)
        fields = identity_fields(dets)
        if len(pool) == 0 or len(refs) == 0:
            return _empty_rows(pool)
        # every final detection (not only the referred ones) is "kept"
        survived = _same_candidate(pool, state.results[img_idx],
                                   fields).any(dim=1)
        iou = bbox_overlaps(pool.bboxes, dets.bboxes[refs])
        iou = iou.masked_fill(pool.labels[:, None] != dets.labels[refs][None],
                              0)
        best_iou, best = iou.max(dim=1)
        keep = (~survived & (best_iou > self.iou_thr)).nonzero()[:, 0]
        rows = pool[keep]
        rows.ref_index = torch.as_tensor(refs, device=best.device)[best[keep]]
        rows.ref_iou = best_iou[keep]
        if self.max_per_detection is not None and len(rows):
            order = torch.argsort(rows.scores, descending=True)
            rows = rows[order]
            rank = torch.zeros_like(rows.ref_index)
            for ref in rows.ref_index.unique():
                sel = (rows.ref_index == ref).nonzero()[:, 0]
                rank[sel] = torch.arange(len(sel), device=sel.device)
            rows = rows[rank < self.max_per_detection]
        return rows


class OtherClasses(CandidateSelector):
    """Final detections' own candidates scored for other classes.

    Args:
        labels (int | Sequence[int]): Classes to explain on each candidate.
        det_index (int | Sequence[int], optional): Which final detections
            (indices into those scoring >= ``score_thr``); default all.
    """

    refers_to_detections = True

    def __init__(self, labels: Union[int, Sequence[int]],
                 det_index: Union[int, Sequence[int], None] = None) -> None:
        self.labels = _as_list(labels, 'labels')
        if not self.labels:
            raise ValueError('OtherClasses needs at least one class')
        self.det_index = _as_list(det_index, 'det_index')

    def check(self, adapter):
        _labels_in_range(self.labels, adapter)

    def select(self, adapter, state, img_idx, score_thr):
        dets = final_detections(state, img_idx, score_thr)
        refs = _pick(dets, self.det_index, 'det_index')
        device = dets.labels.device
        refs_t = torch.as_tensor(refs, dtype=torch.long, device=device)
        # detection-major: every class of one detection together
        ref_index = refs_t.repeat_interleave(len(self.labels))
        rows = dets[ref_index]
        rows.labels = torch.as_tensor(self.labels, device=device).repeat(
            len(refs))
        rows = describe_candidates(adapter, state, img_idx, rows)
        rows.ref_index = ref_index
        rows.ref_iou = _paired_iou(rows.bboxes, dets.bboxes[ref_index])
        return rows


class MatchedCandidates(CandidateSelector):
    """For given boxes and classes, the best candidate of that class.

    Every candidate location of the detector (each prior of a dense head, each
    proposal of an R-CNN, each query of DETR) is scored for the given class;
    among those whose box overlaps the given box with IoU >= ``min_iou``
    the highest-scoring one is chosen, or, when none does, the one of highest
    IoU. Typical use: a ground-truth object the detector missed, or the true
    class on a misclassified object.

    Args:
        boxes (array-like): (M, 4) boxes x1, y1, x2, y2 in original-image
            pixels.
        labels (int | array-like): (M, ) classes, or one class for all.
        min_iou (float): Overlap a candidate needs to compete on score, in
            [0, 1].
    """

    def __init__(self, boxes: ArrayLike, labels: Union[int, ArrayLike],
                 min_iou: float = 0.5) -> None:
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.ndim == 1 and boxes.size == 4:
            boxes = boxes[None]
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not \
                np.isfinite(boxes).all():
            raise ValueError('boxes must be finite (M, 4) x1, y1, x2, y2, '
                             f'got shape {boxes.shape}')
        if ((boxes[:, 2:] <= boxes[:, :2])).any():
            raise ValueError('boxes need x2 > x1 and y2 > y1')
        labels = _as_list(labels, 'labels')
        if len(labels) == 1 and len(boxes) != 1:
            labels = labels * len(boxes)
        if len(labels) != len(boxes):
            raise ValueError(f'{len(labels)} labels for {len(boxes)} boxes')
        if not 0 <= min_iou <= 1:
            raise ValueError(f'min_iou must be in [0, 1], got {min_iou}')
        self.boxes, self.labels, self.min_iou = boxes, labels, min_iou

    def check(self, adapter):
        _labels_in_range(self.labels, adapter)

    def select(self, adapter, state, img_idx, score_thr):
        locations = adapter.candidate_locations(state, img_idx)
        device = next(v for v in locations.values()
                      if isinstance(v, Tensor)).device
        boxes = torch.as_tensor(self.boxes, device=device)
        chosen: list = [None] * len(boxes)
        ious: list = [None] * len(boxes)
        for label in sorted(set(self.labels)):  # score each class once
            scored = locations.clone()
            scored.labels = torch.full((len(scored), ), label,
                                       dtype=torch.long, device=device)
            scored = describe_candidates(adapter, state, img_idx, scored)
            for m in [m for m, c in enumerate(self.labels) if c == label]:
                iou = bbox_overlaps(scored.bboxes, boxes[m:m + 1])[:, 0]
                eligible = iou >= self.min_iou
                pick = int(scored.scores.masked_fill(~eligible, -1).argmax()
                           if bool(eligible.any()) else iou.argmax())
                chosen[m], ious[m] = scored[pick], iou[pick]
        rows = InstanceData.cat(chosen)
        rows.ref_index = torch.arange(len(boxes), device=device)
        rows.ref_iou = torch.stack(ious).float()
        return rows


def _pick(dets: InstanceData, index: Optional[list], name: str) -> list:
    if index is None:
        return list(range(len(dets)))
    bad = [i for i in index if i >= len(dets)]
    if bad:
        raise ValueError(f'{name} {bad} out of range: the image has '
                         f'{len(dets)} detections above score_thr')
    return index


def _paired_iou(a: Tensor, b: Tensor) -> Tensor:
    if len(a) == 0:
        return a.new_zeros((0, ))
    return bbox_overlaps(a, b, is_aligned=True)


def _empty_rows(pool: InstanceData) -> InstanceData:
    rows = pool[pool.labels.new_zeros((0, ), dtype=torch.long)]
    rows.ref_index = pool.labels.new_zeros((0, ), dtype=torch.long)
    rows.ref_iou = pool.labels.new_zeros((0, ), dtype=torch.float)
    return rows


#: Short edge of the grid maps are compared on (Odam-NMS's default).
CORRELATION_GRID_SHORT_EDGE = 50


def reference_correlations(maps, ref_maps, ref_rows: Tensor,
                           short_edge: int = CORRELATION_GRID_SHORT_EDGE
                           ) -> Tensor:
    """Cosine correlation of each row's maps with its reference's maps.

    Both are rendered on a grid with the image's aspect ratio and
    ``short_edge`` cells on its shorter side (as Odam-NMS compares maps).

    Args:
        maps (HeatMaps): N rows x T targets.
        ref_maps (HeatMaps): R references x the same T targets.
        ref_rows (Tensor): (N, ) row of ``ref_maps`` each row refers to.

    Returns:
        Tensor: (N, T) in [0, 1] (0 where either map is all zero).
    """
    from ..models.candidate_maps import common_grid_size
    from ..models.odam_nms import map_correlation
    grid = common_grid_size(maps.ori_shape, short_edge)
    out = torch.zeros((len(ref_rows), len(maps.targets)))
    for row, ref in enumerate(ref_rows.tolist()):  # one row's maps at a time
        own = maps.render([row], size=grid)[0]
        other = ref_maps.render([ref], size=grid)[0]
        out[row] = map_correlation(own, other).diagonal()  # target t with t
    return out


def as_selectors(candidates, num_images: int) -> list:
    """One selector per image from a selector, a list of them, or None."""
    if candidates is None:
        return [FinalDetections()] * num_images
    if isinstance(candidates, CandidateSelector):
        return [candidates] * num_images
    candidates = list(candidates)
    if len(candidates) != num_images or not all(
            isinstance(c, CandidateSelector) for c in candidates):
        raise TypeError('candidates must be a CandidateSelector or one per '
                        f'image ({num_images})')
    return candidates
