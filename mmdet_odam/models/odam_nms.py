"""Odam-NMS: non-maximum suppression with ODAM heat-map correlations.

Paper Sec. 3.3 and App. A.1 (Algorithm 1). Candidates of one class are visited
by descending score; a candidate ``p`` is a duplicate of an already kept ``d``
(and removed) when

* ``IoU(p, d) >  T_iou`` and ``corr(p, d) >= T_low`` (overlapping boxes that
  look at the same object), or
* ``IoU(p, d) <= T_iou`` and ``corr(p, d) >  T_high`` (boxes that hardly
  overlap but whose explanations say they detected the same object).

So a high-IoU pair is *kept* when its maps differ (``corr < T_low``: crowded,
overlapping people) and a low-IoU pair is *removed* when its maps agree.

Decisions (documented for the README):

* **Correlation** (``correlation='cosine'``, default): cosine of the flattened
  maps, i.e. the dot product of L2-normalised maps, as the authors' code does
  (their thresholds 0.2 / 0.8 were tuned for it). ODAM maps are ReLU outputs
  (non-negative), so the cosine lies in [0, 1], is 0 exactly when the supports
  are disjoint, and ``T_low = 0`` is the classical limit. ``'pearson'`` (the
  paper's words "normalized correlation") subtracts each map's mean first, so
  its value depends on how much empty background the grid holds, and disjoint
  supports give a small *negative* value (covariance ``-mean_a * mean_b``):
  thresholds tuned for one measure do not transfer to the other. Correlations
  are clamped to [-1, 1].
* **Maps without information**: an all-zero map (the candidate's gradient is
  negative everywhere) and, for ``'pearson'``, a constant map have correlation
  0 with everything (:func:`map_correlation`). In :func:`odam_nms` a pair in
  which either map is like that is judged by IoU alone (classical NMS) rather
  than kept as "different objects": a missing explanation is no evidence of
  distinct objects. Candidates that get no map (beyond ``max_candidates``, or
  pruned as explained below) are treated the same way.
* **Boundaries: ties follow classical NMS.** mmcv's ``nms`` suppresses when
  ``IoU > T_iou`` (strict), so ``IoU == T_iou`` is the low-IoU branch here
  (Algorithm 1 writes ``>=``); at ``corr == T_low`` a high-IoU pair is removed
  and at ``corr == T_high`` a low-IoU pair is kept (Algorithm 1 writes ``>``
  for both). These differ from Algorithm 1 only on exact equality and make
  ``T_low = 0, T_high = 1`` reproduce the standard NMS *exactly* for
  non-negative maps with the cosine (every correlation is >= 0 and none is
  > 1), including disjoint maps (corr exactly 0) that a strict ``corr > 0``
  would have kept. ``t_low=None`` / ``t_high=None`` mean -inf / +inf (the IoU
  rule alone / no low-IoU removal), which is classical NMS for any maps (with
  ``'pearson'``, whose correlations can be negative, ``t_low=0`` is not).
* **Bit-for-bit parity with mmcv**: IoUs use the arithmetic of mmcv's CPU
  ``nms`` kernel (float32 ``inter / (area_d + area_p - inter)``, threshold cast
  to float32; a zero union gives IoU 0 instead of NaN), candidates are sorted
  with the same (non-stable) ``Tensor.sort`` so that equal scores are visited
  in the same order, and :func:`batched_odam_nms` computes IoUs on the
  class-offset boxes that mmcv's ``batched_nms`` builds. Classes never suppress
  each other (also not through the low-IoU rule).
* **Cost bounds**: the greedy pass runs on blocks of ``block_size`` candidates
  in score order, so memory is O(K * B + B * B) for K kept and B per block (the
  N x N matrices are never built), and it stops as soon as ``max_num``
  candidates are kept: lower-scored candidates can neither be kept nor remove
  a kept one. ``maps`` may be a callable that computes maps of a block on
  demand, so that candidates after that point get no map. In the detector
  integration at most ``max_candidates`` candidates per image (the
  highest-scored that need one) get maps, and when ``t_high`` is None or >= 1
  (no low-IoU removal) only candidates with a same-class partner of
  ``IoU > T_iou`` do, since no decision about any other candidate can depend
  on its map (exact); that partner search also runs block by block, only as
  far as the greedy pass goes.

Detectors (built as ``OdamNMSDetector``, :mod:`.odam_nms_detector`) call
:class:`OdamNMS` when their head's test config has ``odam_nms``: the head's
own post-processing runs up to NMS (same score threshold, ``nms_pre``, score
factors, rescaling and ``min_bbox_size`` filter as mmdet),
the candidates' ODAM maps of their class logit are computed in batches by
:class:`~mmdet_odam.models.candidate_maps.CandidateMapper` (dense heads:
receptive-field patches of the neck features; R-CNN: the pooled RoI features),
Odam-NMS replaces ``batched_nms`` and ``max_per_img`` is applied. Maps are
computed from detached features (no graph is kept) under
``torch.enable_grad()`` (test loops run under ``torch.no_grad()``;
``torch.inference_mode()`` is refused with an error). The rest of the test
config is read as usual (``nms.iou_threshold`` when
``OdamNMS(iou_threshold=None)``, ``nms.class_agnostic``); nothing else sees
``odam_nms``. DETR-style detectors have no NMS: building one as an
``OdamNMSDetector`` raises ``NotImplementedError`` instead of silently
ignoring the entry.
"""
import copy
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import (bbox2roi, get_box_tensor, get_box_wh,
                                   scale_boxes)
from mmengine.structures import InstanceData
from torch import Tensor

from ..explainers.adapters.dense import dense_candidates
from ..explainers.heatmap import NON_NEGATIVE_GRAD_MODES
from ..utils.isolation import shared_weights_copy
from .candidate_maps import CandidateMapper

CORRELATIONS = ('cosine', 'pearson')

#: ``maps`` argument: a (N, D) / (N, h, w) tensor, a callable returning the
#: maps of the requested candidate indices (lazy), or None (classical NMS).
MapsLike = Union[Tensor, Callable[[Tensor], Tensor], None]


# -- pure functions -----------------------------------------------------------
def _unit_rows(maps: Tensor, kind: str = 'cosine') -> Tuple[Tensor, Tensor]:
    """Rows scaled to unit L2 norm (``'pearson'``: after mean subtraction).

    Args:
        maps (Tensor): (N, D) or (N, h, w).
        kind (str): ``'cosine'`` or ``'pearson'``.

    Returns:
        tuple[Tensor, Tensor]: Unit rows (N, D), zero where the map carries no
        information, and that validity mask (N, ) bool.
    """
    if kind not in CORRELATIONS:
        raise ValueError(f'correlation must be one of {CORRELATIONS}, '
                         f'got {kind!r}')
    x = maps.reshape(len(maps), -1)
    if not x.is_floating_point():
        x = x.float()
    if x.shape[1] == 0:
        return x, torch.zeros(len(x), dtype=torch.bool, device=x.device)
    scale = x.abs().amax(1)
    valid = torch.isfinite(scale) & (scale > 0)  # NaN propagates into amax
    if kind == 'pearson':
        x = x - x.mean(1, keepdim=True)
        centred = x.abs().amax(1)
        # a constant map is all rounding noise after mean subtraction
        valid &= centred > 1e-6 * scale
        scale = centred
    zeros = torch.zeros_like(scale)
    # max |x| = 1 before the norm: no underflow for tiny maps
    x = x * torch.where(valid, 1 / scale, zeros)[:, None]
    if not bool(valid.all()):
        x[~valid] = 0  # also clears NaN / inf rows
    norm = x.norm(dim=1)
    x *= torch.where(valid, 1 / norm, zeros)[:, None]
    return x, valid


def map_correlation(maps_a: Tensor, maps_b: Tensor,
                    kind: str = 'cosine') -> Tensor:
    """Pairwise correlation of two sets of heat maps.

    Args:
        maps_a (Tensor): (N, D) or (N, h, w).
        maps_b (Tensor): (M, D) or (M, h, w), same number of elements per map.
        kind (str): ``'cosine'`` (default, authors' code): dot product of the
            L2-normalised maps, in [0, 1] for non-negative maps.
            ``'pearson'`` (paper's wording): the same after subtracting each
            map's mean, in [-1, 1]. See the module docstring for why cosine.

    Returns:
        Tensor: (N, M), clamped to [-1, 1]. All-zero maps (and constant maps
        for ``'pearson'``, or maps with non-finite values) have correlation 0
        with everything, themselves included.
    """
    unit_a, _ = _unit_rows(maps_a, kind)
    unit_b, _ = _unit_rows(maps_b, kind)
    if unit_a.shape[1] != unit_b.shape[1]:
        raise ValueError('maps_a and maps_b differ in size: '
                         f'{unit_a.shape[1]} vs {unit_b.shape[1]}')
    dtype = torch.promote_types(unit_a.dtype, unit_b.dtype)
    return (unit_a.to(dtype) @ unit_b.to(dtype).T).clamp(-1, 1)


def pairwise_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of every pair, with the arithmetic of mmcv's CPU ``nms`` kernel.

    ``inter / (area_a + area_b - inter)`` in the boxes' dtype (mmcv: float32,
    offset 0), so threshold decisions agree with mmcv bit for bit. A pair with
    a non-positive union (zero-area or inverted boxes; mmcv: NaN, never
    suppressing) gets IoU 0.

    Args:
        boxes_a (Tensor): (N, 4) as (x1, y1, x2, y2); the higher-scored boxes.
        boxes_b (Tensor): (M, 4).

    Returns:
        Tensor: (N, M).
    """
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    lt = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    rb = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    iou = inter / union
    return torch.where(union > 0, iou, torch.zeros_like(iou))


def _check_thresholds(t_high: Optional[float], t_low: Optional[float],
                      correlation: str) -> None:
    if correlation not in CORRELATIONS:
        raise ValueError(f'correlation must be one of {CORRELATIONS}, '
                         f'got {correlation!r}')
    if t_high is not None and t_low is not None and t_low > t_high:
        raise ValueError(f't_low ({t_low}) must not exceed t_high ({t_high})')


def duplicate_matrix(iou: Tensor, corr: Tensor, informative: Tensor,
                     iou_threshold: float, t_high: Optional[float],
                     t_low: Optional[float]) -> Tensor:
    """Algorithm 1's duplicate test for every (kept, candidate) pair.

    Args:
        iou (Tensor): (K, B) IoUs.
        corr (Tensor): (K, B) map correlations.
        informative (Tensor): (K, B) bool, both maps carry information; False
            pairs are judged by IoU alone.
        iou_threshold (float): T_iou; ``iou > T_iou`` is the high-IoU branch.
        t_high (float | None): T_high (None: +inf).
        t_low (float | None): T_low (None: -inf).

    Returns:
        Tensor: (K, B) bool, True where the candidate duplicates the kept one.
    """
    high = iou > torch.tensor(iou_threshold, dtype=iou.dtype)
    dup_high = high if t_low is None else high & (corr >= t_low)
    if t_high is None:
        dup = dup_high
    else:
        dup = dup_high | (~high & (corr > t_high))
    return torch.where(informative, dup, high)


def _class_offset_boxes(boxes: Tensor, labels: Tensor,
                        class_agnostic: bool) -> Tensor:
    """The boxes mmcv's ``batched_nms`` hands to ``nms`` (class offsets)."""
    if class_agnostic or len(boxes) == 0:
        return boxes
    max_coordinate = boxes.max()
    offsets = labels.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return boxes + offsets[:, None]


def _greedy(boxes: Tensor, scores: Tensor, labels: Optional[Tensor],
            maps: MapsLike, iou_threshold: float, t_high: Optional[float],
            t_low: Optional[float], correlation: str, max_num: int,
            block_size: int) -> Tensor:
    """Blocked greedy pass of Algorithm 1 (see :func:`batched_odam_nms`)."""
    _check_thresholds(t_high, t_low, correlation)
    num = len(scores)
    if num == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    order = scores.sort(descending=True)[1]  # same call (and ties) as mmcv
    boxes_o = boxes[order]
    labels_o = None if labels is None else labels[order]
    use_maps = maps is not None and not (t_low is None and t_high is None)
    if use_maps and isinstance(maps, Tensor) and len(maps) != num:
        raise ValueError(f'{len(maps)} maps for {num} candidates')
    block_size = max(1, int(block_size))
    kept_pos: List[Tensor] = []
    kept_units: List[Tensor] = []
    kept_valid: List[Tensor] = []
    num_kept = 0

    def dup_between(rows: slice, row_units, row_valid, cols: slice, units,
                    valid) -> Tensor:
        iou = pairwise_iou(boxes_o[rows], boxes_o[cols])
        if use_maps:
            dtype = torch.promote_types(row_units.dtype, units.dtype)
            corr = (row_units.to(dtype) @ units.to(dtype).T).clamp(-1, 1)
            informative = row_valid[:, None] & valid[None, :]
            dup = duplicate_matrix(iou, corr, informative, iou_threshold,
                                   t_high, t_low)
        else:
            dup = iou > torch.tensor(iou_threshold, dtype=iou.dtype)
        if labels_o is not None:
            dup &= labels_o[rows][:, None] == labels_o[cols][None, :]
        return dup

    for start in range(0, num, block_size):
        end = min(num, start + block_size)
        units = valid = None
        if use_maps:
            block_maps = maps(order[start:end]) if callable(maps) \
                else maps[order[start:end]]
            units, valid = _unit_rows(block_maps, correlation)
        removed = torch.zeros(end - start, dtype=torch.bool)
        if num_kept:
            pos = torch.cat(kept_pos)
            k_units = torch.cat(kept_units) if use_maps else None
            k_valid = torch.cat(kept_valid) if use_maps else None
            removed |= dup_between(pos, k_units, k_valid, slice(start, end),
                                   units, valid).any(0).cpu()
        inner = dup_between(slice(start, end), units, valid,
                            slice(start, end), units, valid)
        inner = inner.triu(1).cpu().numpy()
        removed = removed.numpy()
        local: List[int] = []
        for i in range(end - start):
            if removed[i]:
                continue
            local.append(i)
            num_kept += 1
            if 0 < max_num <= num_kept:
                break
            removed |= inner[i]
        local_t = torch.as_tensor(local, dtype=torch.long,
                                  device=scores.device)
        kept_pos.append(local_t + start)
        if use_maps:
            kept_units.append(units[local_t])
            kept_valid.append(valid[local_t])
        if 0 < max_num <= num_kept:
            break
    return order[torch.cat(kept_pos)]


def odam_nms(bboxes: Tensor, scores: Tensor, maps: MapsLike,
             iou_threshold: float = 0.5, t_high: Optional[float] = 0.8,
             t_low: Optional[float] = 0.2, correlation: str = 'cosine',
             max_num: int = -1, block_size: int = 256) -> Tensor:
    """Odam-NMS (Algorithm 1) for the candidates of ONE class.

    Args:
        bboxes (Tensor): (N, 4) boxes (x1, y1, x2, y2).
        scores (Tensor): (N, ) confidences; visited in descending order.
        maps (Tensor | callable | None): (N, D) or (N, h, w) heat maps, or a
            callable mapping candidate indices (B, ) to their maps (B, ...)
            (called block by block in score order, only as far as needed), or
            None (classical NMS).
        iou_threshold (float): T_iou.
        t_high (float | None): T_high; a low-IoU (``<= T_iou``) pair with
            ``corr > T_high`` is a duplicate. None: never.
        t_low (float | None): T_low; a high-IoU (``> T_iou``) pair with
            ``corr >= T_low`` is a duplicate. None: always (IoU rule).
        correlation (str): ``'cosine'`` or ``'pearson'``
            (:func:`map_correlation`).
        max_num (int): Stop after keeping this many (<= 0: no limit).
        block_size (int): Candidates per block of the greedy pass.

    Returns:
        Tensor: (K, ) long indices of the kept candidates, by descending score.
    """
    return _greedy(bboxes, scores, None, maps, iou_threshold, t_high, t_low,
                   correlation, max_num, block_size)


def batched_odam_nms(bboxes: Tensor, scores: Tensor, labels: Tensor,
                     maps: MapsLike, iou_threshold: float = 0.5,
                     t_high: Optional[float] = 0.8,
                     t_low: Optional[float] = 0.2,
                     correlation: str = 'cosine', max_num: int = -1,
                     class_agnostic: bool = False,
                     block_size: int = 256) -> Tensor:
    """Odam-NMS per class, like mmcv's ``batched_nms``.

    Candidates of different classes never suppress each other (unless
    ``class_agnostic``). IoUs are computed on mmcv's class-offset boxes, so
    with ``t_low=0, t_high=1`` (non-negative maps, cosine) or
    ``t_low=t_high=None`` the result equals ``batched_nms(...)[1][:max_num]``
    exactly.

    Args:
        bboxes (Tensor): (N, 4).
        scores (Tensor): (N, ).
        labels (Tensor): (N, ) class of each candidate.
        maps (Tensor | callable | None): As :func:`odam_nms`.
        iou_threshold (float): T_iou.
        t_high (float | None): T_high (None: +inf).
        t_low (float | None): T_low (None: -inf).
        correlation (str): ``'cosine'`` or ``'pearson'``.
        max_num (int): Keep at most this many (<= 0: all).
        class_agnostic (bool): Ignore labels.
        block_size (int): Candidates per block of the greedy pass.

    Returns:
        Tensor: (K, ) long indices, by descending score, K <= max_num.
    """
    boxes = _class_offset_boxes(get_box_tensor(bboxes), labels, class_agnostic)
    return _greedy(boxes, scores, None if class_agnostic else labels, maps,
                   iou_threshold, t_high, t_low, correlation, max_num,
                   block_size)


def high_iou_partners(bboxes: Tensor, labels: Tensor, iou_threshold: float,
                      class_agnostic: bool = False,
                      rows: Optional[Tensor] = None,
                      block_size: int = 1024) -> Tensor:
    """Which candidates overlap another same-class one with IoU > T_iou.

    Uses the same (class-offset, mmcv-arithmetic) IoUs as
    :func:`batched_odam_nms`; the IoU matrix is exactly symmetric.

    Args:
        bboxes (Tensor): (N, 4).
        labels (Tensor): (N, ).
        iou_threshold (float): T_iou.
        class_agnostic (bool): Ignore labels.
        rows (Tensor, optional): (R, ) indices of the candidates to test;
            default all.
        block_size (int): Rows per block (memory O(block_size * N)).

    Returns:
        Tensor: (R, ) bool.
    """
    boxes = _class_offset_boxes(get_box_tensor(bboxes), labels, class_agnostic)
    return _partners(boxes, None if class_agnostic else labels, iou_threshold,
                     rows, block_size)


def _partners(boxes: Tensor, labels: Optional[Tensor], iou_threshold: float,
              rows: Optional[Tensor] = None,
              block_size: int = 1024) -> Tensor:
    if rows is None:
        rows = torch.arange(len(boxes), device=boxes.device)
    out = torch.zeros(len(rows), dtype=torch.bool, device=boxes.device)
    thr = torch.tensor(iou_threshold, dtype=boxes.dtype)
    for start in range(0, len(rows), block_size):
        idx = rows[start:start + block_size]
        high = pairwise_iou(boxes[idx], boxes) > thr
        if labels is not None:
            high &= labels[idx][:, None] == labels[None, :]
        high[torch.arange(len(idx), device=idx.device), idx] = False
        out[start:start + len(idx)] = high.any(1)
    return out


# -- the detector-facing module -----------------------------------------------
@TASK_UTILS.register_module()
class OdamNMS:
    """Odam-NMS for detectors, selected by ``test_cfg.odam_nms``.

    Args:
        iou_threshold (float | None): T_iou (None: the test config's
            ``nms.iou_threshold``). Paper: 0.5 (FCOS), 0.6 (Faster R-CNN).
        t_high (float | None): T_high (paper 0.8 / 0.7). None: +inf.
        t_low (float | None): T_low (paper 0.2 / 0.3). None: -inf.
        correlation (str): ``'cosine'`` (default) or ``'pearson'``.
        grid_short_edge (int): Short edge of the common map grid (paper 50).
        score_target (str): Explained scalar, ``'logit'`` (class logit, as the
            authors for NMS) or ``'score'``.
        smooth (str | float): Phi of the maps (``'adaptive'``, ``'none'`` or a
            sigma in cells), see :class:`CandidateMapper`.
        sigma_scale (float): Adaptive sigma as a fraction of the object size.
        min_sigma (float): Lower bound of the adaptive sigma (cells).
        max_candidates (int): At most this many candidates per image (the
            highest-scored ones that need one) get maps; the rest are judged
            by IoU alone. Bounds time and memory (<= 0: no cap).
        block_size (int): Candidates per block of the greedy pass (and per
            batched map computation).
        cell_position (str): Where feature cells lie in the image (see
            :class:`CandidateMapper`).
    """

    def __init__(self, iou_threshold: Optional[float] = 0.5,
                 t_high: Optional[float] = 0.8, t_low: Optional[float] = 0.2,
                 correlation: str = 'cosine', grid_short_edge: int = 50,
                 score_target: str = 'logit',
                 smooth: Union[str, float] = 'adaptive',
                 sigma_scale: float = 0.1, min_sigma: float = 0.5,
                 max_candidates: int = 1000, block_size: int = 256,
                 cell_position: str = 'grid') -> None:
        _check_thresholds(t_high, t_low, correlation)
        self.iou_threshold = iou_threshold
        self.t_high = t_high
        self.t_low = t_low
        self.correlation = correlation
        self.max_candidates = int(max_candidates)
        self.block_size = int(block_size)
        self.mapper = CandidateMapper(
            grid_short_edge=grid_short_edge, score_target=score_target,
            smooth=smooth, sigma_scale=sigma_scale, min_sigma=min_sigma,
            cell_position=cell_position)

    # -- NMS ------------------------------------------------------------------
    def resolve_iou_threshold(self, nms_cfg=None) -> float:
        """T_iou, falling back to the test config's ``nms.iou_threshold``."""
        if self.iou_threshold is not None:
            return float(self.iou_threshold)
        if nms_cfg is None or nms_cfg.get('iou_threshold') is None:
            raise ValueError('OdamNMS(iou_threshold=None) needs '
                             'test_cfg.nms.iou_threshold')
        return float(nms_cfg['iou_threshold'])

    def _maps_unused(self) -> bool:
        """No decision can depend on a map (IoU rule only): every
        correlation passes T_low and none exceeds T_high."""
        # the cosine of non-negative maps is never below 0
        lowest = 0.0 if self.correlation == 'cosine' and \
            self.mapper.grad_mode in NON_NEGATIVE_GRAD_MODES else -1.0
        return (self.t_low is None or self.t_low <= lowest) and (
            self.t_high is None or self.t_high >= 1)

    def needs_maps(self, bboxes: Tensor, labels: Tensor, iou_threshold: float,
                   class_agnostic: bool = False,
                   rows: Optional[Tensor] = None) -> Tensor:
        """Candidates whose map can change a decision, (R, ) bool.

        None when no map is used (``t_low`` None or at most the lowest
        correlation, 0 for cosine, and ``t_high`` None or >= 1);
        all when a low-IoU pair can be removed (``t_high < 1``); otherwise only
        candidates with a same-class partner of IoU > T_iou: every other pair
        they form is low-IoU, and no correlation exceeds 1.

        Args:
            bboxes (Tensor): (N, 4).
            labels (Tensor): (N, ).
            iou_threshold (float): T_iou.
            class_agnostic (bool): Ignore labels.
            rows (Tensor, optional): (R, ) candidates to test; default all.
        """
        num = len(labels) if rows is None else len(rows)
        if self._maps_unused():
            return labels.new_zeros(num, dtype=torch.bool)
        if self.t_high is not None and self.t_high < 1:
            return labels.new_ones(num, dtype=torch.bool)
        return high_iou_partners(bboxes, labels, iou_threshold,
                                 class_agnostic, rows)

    def __call__(self, bboxes: Tensor, scores: Tensor, labels: Tensor,
                 maps: MapsLike, max_num: int = -1,
                 class_agnostic: bool = False, nms_cfg=None) -> Tensor:
        """:func:`batched_odam_nms` with this module's thresholds.

        Returns:
            Tensor: (K, ) long kept indices by descending score.
        """
        return batched_odam_nms(
            bboxes, scores, labels, maps,
            iou_threshold=self.resolve_iou_threshold(nms_cfg),
            t_high=self.t_high, t_low=self.t_low,
            correlation=self.correlation, max_num=max_num,
            class_agnostic=class_agnostic, block_size=self.block_size)

    def _select(self, bboxes: Tensor, scores: Tensor, labels: Tensor,
                compute: Callable[[Tensor], Tensor], map_size: int, nms_cfg,
                max_num: int) -> Tensor:
        """Odam-NMS of one image's candidates with maps computed on demand.

        The greedy pass asks for the maps of one block of candidates at a time,
        in score order, and stops once ``max_num`` are kept. Of each block,
        only candidates whose map can matter (:meth:`needs_maps`) and, over
        the image, only the first ``max_candidates`` of them get one; the
        others get a zero map (IoU rule).

        Args:
            bboxes (Tensor): (N, 4) boxes NMS compares.
            scores (Tensor): (N, ).
            labels (Tensor): (N, ).
            compute (callable): Candidate indices (M, ) -> maps (M, ...).
            map_size (int): Elements of one map (grid H * W).
            nms_cfg (dict | None): The test config's ``nms``.
            max_num (int): ``max_per_img`` (<= 0: all).

        Returns:
            Tensor: (K, ) kept indices by descending score.
        """
        class_agnostic = bool(nms_cfg.get('class_agnostic', False)) \
            if nms_cfg is not None else False
        iou_thr = self.resolve_iou_threshold(nms_cfg)
        budget = [self.max_candidates if self.max_candidates > 0 else -1]

        def provider(idx: Tensor) -> Tensor:
            need = self.needs_maps(bboxes, labels, iou_thr, class_agnostic,
                                   rows=idx)
            if budget[0] >= 0:  # blocks come in score order
                need &= torch.cumsum(need.long(), 0) <= budget[0]
                budget[0] -= int(need.sum())
            out = torch.zeros((len(idx), map_size), device=idx.device)
            if bool(need.any()):
                computed = compute(idx[need]).flatten(1)
                out = out.to(computed.dtype)
                out[need] = computed
            return out

        maps = None if self._maps_unused() else provider
        return self(bboxes, scores, labels, maps, max_num, class_agnostic,
                    nms_cfg)

    # -- dense heads ----------------------------------------------------------
    def predict_dense(self, head, x: Sequence[Tensor], batch_data_samples,
                      rescale: bool = False) -> List[InstanceData]:
        """``BaseDenseHead.predict`` with Odam-NMS instead of ``batched_nms``.

        Args:
            head: A ``BaseDenseHead`` with the generic
                ``_predict_by_feat_single`` (FCOS, RetinaNet, ATSS, ...).
            x (Sequence[Tensor]): Neck outputs, each (B, C, H_l, W_l).
            batch_data_samples (list): Data samples (for their metainfo).
            rescale (bool): Return boxes in original-image pixels.

        Returns:
            list[InstanceData]: ``bboxes`` (K, 4), ``scores`` (K, ),
            ``labels`` (K, ) per image, as ``predict``.
        """
        _check_grad_mode()
        metas = [ds.metainfo for ds in batch_data_samples]
        cfg = head.test_cfg
        feats = tuple(f.detach() for f in x)
        # mmdet filters by min_bbox_size after rescaling: do it below
        inner_cfg = copy.deepcopy(cfg)
        inner_cfg['min_bbox_size'] = -1
        # candidate tracking and patch maps alter how the head runs: on a
        # private copy sharing its weights, invisible to other threads
        head = shared_weights_copy(head)
        candidates, norm_stats = dense_candidates(head, feats, metas,
                                                  inner_cfg)
        img_shapes = [meta['img_shape'] for meta in metas]
        results_list = []
        for img_idx, (res, meta) in enumerate(zip(candidates, metas)):
            res.input_bboxes = res.bboxes  # input pixels, for the maps
            if rescale:
                res.bboxes = scale_boxes(
                    res.bboxes, [1 / s for s in meta['scale_factor']])
            if cfg.get('min_bbox_size', -1) >= 0:
                w, h = get_box_wh(res.bboxes)
                valid = (w > cfg.min_bbox_size) & (h > cfg.min_bbox_size)
                if not valid.all():
                    res = res[valid]
            if res.bboxes.numel() > 0:

                def compute(sel: Tensor, res=res, img_idx=img_idx) -> Tensor:
                    cands = [res[sel[:0]]] * len(metas)
                    cands[img_idx] = InstanceData(
                        cand_level=res.cand_level[sel],
                        cand_index=res.cand_index[sel],
                        labels=res.labels[sel],
                        bboxes=get_box_tensor(res.input_bboxes)[sel])
                    with torch.enable_grad():
                        maps = self.mapper.dense(head, feats, norm_stats,
                                                 cands, img_shapes)
                    return maps[img_idx].detach()

                grid = self.mapper.grid_size(img_shapes[img_idx])
                keep = self._select(get_box_tensor(res.bboxes), res.scores,
                                    res.labels, compute, grid[0] * grid[1],
                                    cfg.get('nms'), cfg.max_per_img)
                res = res[keep][:cfg.max_per_img]
            results_list.append(_strip(res))
        return results_list

    # -- two-stage (StandardRoIHead) ------------------------------------------
    def predict_rcnn(self, roi_head, x: Sequence[Tensor],
                     batch_img_metas: List[dict],
                     rpn_results_list: List[InstanceData], rcnn_test_cfg,
                     rescale: bool = False) -> List[InstanceData]:
        """``StandardRoIHead.predict_bbox`` with Odam-NMS inside
        ``multiclass_nms``.

        Args:
            roi_head: A ``StandardRoIHead`` (Faster R-CNN).
            x (Sequence[Tensor]): Neck outputs.
            batch_img_metas (list[dict]): Image metainfo.
            rpn_results_list (list[InstanceData]): Proposals (input pixels).
            rcnn_test_cfg (ConfigDict): ``test_cfg.rcnn``.
            rescale (bool): Return boxes in original-image pixels.

        Returns:
            list[InstanceData]: ``bboxes`` (K, 4), ``scores`` (K, ),
            ``labels`` (K, ) per image.
        """
        _check_grad_mode()
        bbox_head = roi_head.bbox_head
        proposals = [res.bboxes for res in rpn_results_list]
        rois = bbox2roi(proposals)
        if rois.shape[0] == 0:
            return type(roi_head).predict_bbox(
                roi_head, x, batch_img_metas, rpn_results_list,
                rcnn_test_cfg, rescale)
        x = tuple(f.detach() for f in x)
        with torch.no_grad():
            bbox_results = roi_head._bbox_forward(x, rois)
        if not isinstance(bbox_results['bbox_pred'], Tensor):
            raise NotImplementedError(
                'OdamNMS supports box heads with tensor regression outputs')
        counts = tuple(len(p) for p in proposals)
        rois_split = rois.split(counts, 0)
        roi_feats = bbox_results['bbox_feats'].split(counts, 0)
        with torch.no_grad():
            raw = bbox_head.predict_by_feat(
                rois=rois_split,
                cls_scores=bbox_results['cls_score'].split(counts, 0),
                bbox_preds=bbox_results['bbox_pred'].split(counts, 0),
                batch_img_metas=batch_img_metas, rcnn_test_cfg=None,
                rescale=rescale)
        results_list = []
        for img_idx, (res, meta) in enumerate(zip(raw, batch_img_metas)):
            bboxes, scores, labels, inds = _multiclass_candidates(
                get_box_tensor(res.bboxes), res.scores,
                rcnn_test_cfg.score_thr)
            out = InstanceData()
            if bboxes.numel() > 0:
                num_classes = res.scores.shape[1] - 1
                roi_idx = inds // num_classes

                def compute(sel: Tensor, roi_idx=roi_idx, labels=labels,
                            img_idx=img_idx, meta=meta) -> Tensor:
                    cand_rois = rois_split[img_idx][roi_idx[sel]].clone()
                    cand_rois[:, 0] = 0
                    with torch.enable_grad():
                        maps = self.mapper.roi(
                            bbox_head, roi_feats[img_idx][roi_idx[sel]],
                            cand_rois, labels[sel], [meta['img_shape']])
                    return maps[0].detach()

                max_num = rcnn_test_cfg.get('max_per_img', -1)
                grid = self.mapper.grid_size(meta['img_shape'])
                keep = self._select(bboxes, scores, labels, compute,
                                    grid[0] * grid[1],
                                    rcnn_test_cfg.get('nms'), max_num)
                if max_num > 0:
                    keep = keep[:max_num]
                bboxes, scores, labels = bboxes[keep], scores[keep], \
                    labels[keep]
            out.bboxes = bboxes
            out.scores = scores
            out.labels = labels
            results_list.append(out)
        return results_list


def _multiclass_candidates(bboxes: Tensor, scores: Tensor, score_thr: float
                           ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The candidates ``multiclass_nms`` hands to ``batched_nms``.

    Args:
        bboxes (Tensor): (M, 4) or (M, C * 4), per RoI.
        scores (Tensor): (M, C + 1) with background last.
        score_thr (float): Keep ``score > score_thr``.

    Returns:
        tuple[Tensor]: boxes (N, 4), scores (N, ), labels (N, ) and indices
        ``roi * C + class`` (N, ).
    """
    num_classes = scores.size(1) - 1
    if bboxes.shape[1] > 4:
        boxes = bboxes.view(scores.size(0), -1, 4)
    else:
        boxes = bboxes[:, None].expand(scores.size(0), num_classes, 4)
    cls_scores = scores[:, :-1]
    labels = torch.arange(num_classes, dtype=torch.long,
                          device=scores.device).view(1, -1).expand_as(
                              cls_scores)
    boxes = boxes.reshape(-1, 4)
    cls_scores = cls_scores.reshape(-1)
    labels = labels.reshape(-1)
    inds = (cls_scores > score_thr).nonzero(as_tuple=False).squeeze(1)
    return boxes[inds], cls_scores[inds], labels[inds], inds


def _strip(results: InstanceData) -> InstanceData:
    """Drop the bookkeeping fields added for the candidate maps."""
    for key in ('cand_level', 'cand_index', 'input_bboxes'):
        if key in results:
            results.pop(key)
    return results


def _check_grad_mode() -> None:
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            'Odam-NMS needs gradients: run the detector under torch.no_grad() '
            '(as mmdet test loops do), not torch.inference_mode()')


# -- building -------------------------------------------------------------------
def build_odam_nms(cfg) -> OdamNMS:
    """Build an :class:`OdamNMS` from a config dict (or pass one through)."""
    if isinstance(cfg, OdamNMS):
        return cfg
    cfg = dict(cfg)
    cfg.setdefault('type', 'OdamNMS')
    return TASK_UTILS.build(cfg)
