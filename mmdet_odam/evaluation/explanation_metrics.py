"""Explanation metrics of the ODAM paper (Sec. 4.2), as pure tensor functions.

Conventions shared by every function here:

* A heat map ``S`` is a non-negative float tensor of shape (H, W) in the
  original image's pixel grid (what the explainers return per target).
* A *region* is a bool tensor of shape (H, W). A box (x1, y1, x2, y2) in pixel
  coordinates covers pixel (row i, col j) when the pixel centre
  (j + 0.5, i + 0.5) lies inside the closed box (:func:`box_region`).
* Ratios with a zero denominator (an all-zero heat map, no energy on any
  object) are ``nan``; aggregators average with ``nanmean`` so such samples
  drop out of that metric only. A zero map never wins a Pointing Game.

Metrics (paper, Sec. 4.2):

* Pointing Game (:func:`pointing_game`): 1 when the arg-max pixel of ``S`` lies
  in the GT box / mask, else 0.
* Energy-based Pointing Game (:func:`energy_pointing_game`): sum of ``S``
  inside the region / sum of ``S``.
* Compactness (:func:`compactness`):
  ``sqrt( sum_x S_x ||x - x_hat||^2 / ((h^2 + w^2) / 4) / sum_x S_x )`` with
  ``x_hat`` the arg-max pixel and (w, h) the GT box size.
* ODI (:func:`object_discrimination_index`): energy inside the union of the
  *other* objects' regions / energy inside the union of *all* objects' regions
  (target included); background is ignored.
* VEA (:func:`vea_curve`, :func:`vea_auc`): IoU of ``S >= T`` with the GT mask
  for T = 0.1, ..., 0.9, and the area under that curve by the trapezoidal rule
  over T (so the AUC of a constant IoU ``c`` is ``0.8 c``, the scale of the
  paper's Tab. 1).
* Deletion / Insertion (:func:`perturbation_curve`, :func:`curve_auc`): pixels
  are perturbed in decreasing heat-map order (ties: raster order), a fixed
  number of pixels per step; the curve holds the tracked score at steps
  0..num_steps, divided by the explained detection's original score by the
  caller; AUC by the trapezoidal rule over the step fraction in [0, 1].
  Deletion replaces pixels of the image with a fill image (uniform random
  values in the evaluator); Insertion starts from a blank image (the fill:
  the dataset mean colour in the evaluator) and puts original pixels back.

Protocol (:func:`match_well_detected`): each GT object is explained through its
best-matching prediction (highest IoU, same class) when that IoU exceeds 0.9
("well-detected" objects); other GT objects are not evaluated.
"""
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

#: Thresholds of the VEA curve (paper, Fig. 5c).
VEA_THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))


# ---------------------------------------------------------------------------
# regions
# ---------------------------------------------------------------------------
def box_region(box: Sequence[float], shape: Sequence[int]) -> Tensor:
    """Pixels whose centre lies inside a box.

    Args:
        box (Sequence[float] | Tensor): (x1, y1, x2, y2) in pixels.
        shape (Sequence[int]): (H, W) of the region.

    Returns:
        Tensor: Bool region of shape (H, W).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    height, width = int(shape[0]), int(shape[1])
    cols = torch.arange(width, dtype=torch.float32) + 0.5
    rows = torch.arange(height, dtype=torch.float32) + 0.5
    in_x = (cols >= x1) & (cols <= x2)
    in_y = (rows >= y1) & (rows <= y2)
    return in_y[:, None] & in_x[None, :]


def union_regions(regions: Sequence[Tensor], shape: Sequence[int]) -> Tensor:
    """Union of bool regions (an empty sequence gives an empty region).

    Args:
        regions (Sequence[Tensor]): Bool regions, each (H, W).
        shape (Sequence[int]): (H, W), used when ``regions`` is empty.

    Returns:
        Tensor: Bool region (H, W).
    """
    out = torch.zeros(int(shape[0]), int(shape[1]), dtype=torch.bool)
    for region in regions:
        out |= region.to(torch.bool)
    return out


# ---------------------------------------------------------------------------
# localisation
# ---------------------------------------------------------------------------
def argmax_pixel(heatmap: Tensor) -> Optional[tuple]:
    """(row, col) of the first maximum in raster order; None for a zero map.

    Args:
        heatmap (Tensor): (H, W).
    """
    if not bool((heatmap > 0).any()):
        return None
    flat = int(heatmap.flatten().argmax())
    return divmod(flat, heatmap.shape[-1])


def pointing_game(heatmap: Tensor, region: Tensor) -> float:
    """Pointing Game hit: 1.0 if the arg-max pixel lies in the region.

    Args:
        heatmap (Tensor): (H, W), non-negative.
        region (Tensor): Bool (H, W): GT box or mask.

    Returns:
        float: 1.0 (hit) or 0.0 (miss; also for an all-zero map).
    """
    peak = argmax_pixel(heatmap)
    if peak is None:
        return 0.0
    return float(bool(region[peak[0], peak[1]]))


def energy_pointing_game(heatmap: Tensor, region: Tensor) -> float:
    """Energy-based Pointing Game: heat inside the region / total heat.

    Args:
        heatmap (Tensor): (H, W), non-negative.
        region (Tensor): Bool (H, W).

    Returns:
        float: In [0, 1]; nan for an all-zero map.
    """
    total = float(heatmap.double().sum())
    if total <= 0:
        return float('nan')
    return float(heatmap.double()[region.to(torch.bool)].sum()) / total


def compactness(heatmap: Tensor, box: Sequence[float]) -> float:
    """Weighted spread of the heat around its maximum, relative to the box.

    ``sqrt( sum_x S_x ||x - x_hat||^2 / ((h^2 + w^2) / 4) / sum_x S_x )``:
    pixel coordinates are pixel centres, ``x_hat`` is the arg-max pixel and
    (w, h) the size of the GT box. 0 for a single-pixel peak.

    Args:
        heatmap (Tensor): (H, W), non-negative.
        box (Sequence[float]): GT box (x1, y1, x2, y2).

    Returns:
        float: Compactness (lower is more concentrated); nan for a zero map
        or a degenerate box.
    """
    peak = argmax_pixel(heatmap)
    x1, y1, x2, y2 = (float(v) for v in box)
    norm = ((x2 - x1) ** 2 + (y2 - y1) ** 2) / 4.0
    if peak is None or norm <= 0:
        return float('nan')
    heat = heatmap.double()
    rows = torch.arange(heat.shape[0], dtype=torch.float64)[:, None]
    cols = torch.arange(heat.shape[1], dtype=torch.float64)[None, :]
    dist2 = (rows - peak[0]) ** 2 + (cols - peak[1]) ** 2
    return float(((heat * dist2).sum() / norm / heat.sum()).sqrt())


def object_discrimination_index(heatmap: Tensor, target: Tensor,
                                others: Tensor) -> float:
    """ODI: heat leaking onto other objects, ignoring the background.

    ``sum(S in others) / sum(S in (target | others))`` where ``others`` is the
    union of the other objects' regions (pixels shared with the target count
    as "other", as the formula in the paper reads).

    Args:
        heatmap (Tensor): (H, W), non-negative.
        target (Tensor): Bool (H, W): the explained object's box or mask.
        others (Tensor): Bool (H, W): union of all other objects' regions.

    Returns:
        float: In [0, 1] (0 = no leak); nan when no heat lies on any object.
    """
    heat = heatmap.double()
    others = others.to(torch.bool)
    every = others | target.to(torch.bool)
    denom = float(heat[every].sum())
    if denom <= 0:
        return float('nan')
    return float(heat[others].sum()) / denom


# ---------------------------------------------------------------------------
# visual explanation accuracy
# ---------------------------------------------------------------------------
def vea_curve(heatmap: Tensor, mask: Tensor,
              thresholds: Sequence[float] = VEA_THRESHOLDS) -> Tensor:
    """IoU of the thresholded map ``S >= T`` with the GT mask, per threshold.

    Args:
        heatmap (Tensor): (H, W), scaled to [0, 1].
        mask (Tensor): Bool GT mask (H, W).
        thresholds (Sequence[float]): T values.

    Returns:
        Tensor: IoUs, float64 of shape (len(thresholds), ); 0 where both the
        thresholded map and the mask are empty.
    """
    mask = mask.to(torch.bool)
    out = torch.zeros(len(thresholds), dtype=torch.float64)
    for k, thr in enumerate(thresholds):
        pred = heatmap >= thr
        union = int((pred | mask).sum())
        out[k] = int((pred & mask).sum()) / union if union else 0.0
    return out


def vea_auc(ious: Tensor, thresholds: Sequence[float] = VEA_THRESHOLDS
            ) -> float:
    """Area under the VEA curve, trapezoidal rule over the thresholds.

    Args:
        ious (Tensor): IoU per threshold, (T, ).
        thresholds (Sequence[float]): The thresholds, (T, ).

    Returns:
        float: AUC (at most ``thresholds[-1] - thresholds[0]``).
    """
    x = torch.as_tensor(thresholds, dtype=torch.float64)
    return float(torch.trapezoid(torch.as_tensor(ious, dtype=torch.float64),
                                 x))


# ---------------------------------------------------------------------------
# deletion / insertion
# ---------------------------------------------------------------------------
def importance_ranks(saliency: Tensor) -> Tensor:
    """Rank of each pixel in decreasing saliency (0 = most important).

    Ties keep raster order, so the ranking is deterministic.

    Args:
        saliency (Tensor): (H, W).

    Returns:
        Tensor: Long ranks, (H, W).
    """
    flat = saliency.flatten()
    order = torch.sort(flat, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(len(order), device=order.device)
    return ranks.view(saliency.shape)


def steps_for_area(area: float, num_steps: int = 100) -> int:
    """Pixels per step so that ``num_steps`` steps cover ``area`` pixels.

    The paper's rule is step = GT-box area / 100 with 100 steps; other
    ``num_steps`` perturb the same total (the box area) in coarser steps.

    Args:
        area (float): GT box area in pixels of the perturbed image.
        num_steps (int): Number of steps.

    Returns:
        int: Pixels per step, at least 1.
    """
    return max(1, int(round(float(area) / max(1, int(num_steps)))))


def perturbation_curve(image: Tensor, saliency: Tensor,
                       score_fn: Callable[[Tensor], Tensor], mode: str,
                       num_steps: int, step_pixels: int, fill: Tensor,
                       batch_size: int = 16) -> Tensor:
    """Scores along a Deletion or Insertion sequence.

    Step k (k = 0..num_steps) perturbs the ``k * step_pixels`` most salient
    pixels (all channels): Deletion shows ``fill`` there and ``image``
    elsewhere; Insertion shows ``image`` there and ``fill`` (the blank image)
    elsewhere.

    Args:
        image (Tensor): The input, (C, H, W).
        saliency (Tensor): Heat map on the same grid, (H, W).
        score_fn (Callable): Maps a batch (B, C, H, W) to scores (B, ).
        mode (str): ``'deletion'`` or ``'insertion'``.
        num_steps (int): Number of steps after step 0.
        step_pixels (int): Pixels perturbed per step.
        fill (Tensor): Replacement (deletion) or blank (insertion) image,
            (C, H, W) or broadcastable to it.
        batch_size (int): Perturbed images per ``score_fn`` call.

    Returns:
        Tensor: Raw scores, float64 of shape (num_steps + 1, ).
    """
    if mode not in ('deletion', 'insertion'):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got "
                         f'{mode!r}')
    if tuple(saliency.shape) != tuple(image.shape[-2:]):
        raise ValueError(f'saliency {tuple(saliency.shape)} and image '
                         f'{tuple(image.shape[-2:])} sizes differ')
    fill = fill.to(image).expand_as(image)
    src, dst = (image, fill) if mode == 'deletion' else (fill, image)
    ranks = importance_ranks(saliency).to(image.device)
    counts = torch.arange(num_steps + 1, device=image.device) * int(
        step_pixels)
    scores = []
    for start in range(0, num_steps + 1, max(1, int(batch_size))):
        chunk = counts[start:start + batch_size]
        changed = ranks[None] < chunk[:, None, None]  # (B, H, W)
        batch = torch.where(changed[:, None], dst[None], src[None])
        scores.append(torch.as_tensor(score_fn(batch)).detach().double()
                      .flatten().cpu())
    return torch.cat(scores)


def curve_auc(curve: Tensor) -> float:
    """Area under a curve sampled uniformly on [0, 1] (trapezoidal rule).

    Args:
        curve (Tensor): (K + 1, ) values at x = 0, 1/K, ..., 1.

    Returns:
        float: The AUC (a constant curve ``c`` gives ``c``).
    """
    curve = torch.as_tensor(curve, dtype=torch.float64)
    if len(curve) < 2:
        return float(curve.mean()) if len(curve) else float('nan')
    return float(torch.trapezoid(curve, dx=1.0 / (len(curve) - 1)))


# ---------------------------------------------------------------------------
# protocol
# ---------------------------------------------------------------------------
def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of (x1, y1, x2, y2) boxes.

    Args:
        boxes1 (Tensor): (N, 4).
        boxes2 (Tensor): (M, 4).

    Returns:
        Tensor: (N, M).
    """
    boxes1, boxes2 = boxes1.double(), boxes2.double()
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).clamp(min=0).prod(dim=-1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).clamp(min=0).prod(dim=-1)
    union = area1[:, None] + area2[None] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12),
                       torch.zeros_like(inter))


def match_well_detected(gt_boxes: Tensor, pred_boxes: Tensor,
                        gt_labels: Optional[Tensor] = None,
                        pred_labels: Optional[Tensor] = None,
                        iou_thr: float = 0.9) -> Tensor:
    """Best-matching prediction of each GT object, if well detected.

    Each GT object takes the prediction of its class with the highest IoU
    (first one on ties); it is kept when that IoU exceeds ``iou_thr``. Two GT
    objects may share a prediction (only when they overlap by more than
    about 80 %).

    Args:
        gt_boxes (Tensor): (G, 4).
        pred_boxes (Tensor): (N, 4).
        gt_labels (Tensor, optional): (G, ); with ``pred_labels`` restricts
            matches to the same class.
        pred_labels (Tensor, optional): (N, ).
        iou_thr (float): IoU a match must exceed.

    Returns:
        Tensor: Long (G, ): prediction index, or -1 when not well detected.
    """
    num_gt = len(gt_boxes)
    out = torch.full((num_gt, ), -1, dtype=torch.long)
    if num_gt == 0 or len(pred_boxes) == 0:
        return out
    ious = box_iou(gt_boxes.reshape(-1, 4).cpu(),
                   pred_boxes.reshape(-1, 4).cpu())
    if gt_labels is not None and pred_labels is not None:
        same = gt_labels.cpu()[:, None] == pred_labels.cpu()[None, :]
        ious = torch.where(same, ious, torch.full_like(ious, -1.0))
    best, index = ious.max(dim=1)
    return torch.where(best > iou_thr, index, out)


def tracked_score(boxes: Tensor, scores: Tensor, labels: Tensor,
                  ref_box: Tensor, ref_label: int,
                  iou_thr: float = 0.5) -> float:
    """Score of the explained detection after a perturbation.

    The best score among candidates of the same class whose box overlaps the
    original detection with IoU > ``iou_thr`` (0 when none does).

    Args:
        boxes (Tensor): Candidate boxes, (M, 4).
        scores (Tensor): Their scores, (M, ).
        labels (Tensor): Their labels, (M, ).
        ref_box (Tensor): The original detection's box, (4, ).
        ref_label (int): Its class.
        iou_thr (float): IoU a candidate must exceed.

    Returns:
        float: The tracked score.
    """
    if len(boxes) == 0:
        return 0.0
    ious = box_iou(ref_box.reshape(1, 4).cpu(), boxes.reshape(-1, 4).cpu())[0]
    ok = (ious > iou_thr) & (labels.cpu() == int(ref_label))
    if not bool(ok.any()):
        return 0.0
    return float(scores.detach().cpu()[ok].max())


__all__ = [
    'VEA_THRESHOLDS', 'box_region', 'union_regions', 'argmax_pixel',
    'pointing_game', 'energy_pointing_game', 'compactness',
    'object_discrimination_index', 'vea_curve', 'vea_auc',
    'importance_ranks', 'steps_for_area', 'perturbation_curve', 'curve_auc',
    'box_iou', 'match_well_detected', 'tracked_score'
]
