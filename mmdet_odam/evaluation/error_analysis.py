"""Sort detections and ground truth into detection error types (TIDE-like).

Pure functions on one image's boxes, plus :class:`ErrorCounts`, which adds
them up over a dataset (overall and per class). Used by
``tools/analyze_errors.py`` (paper App. A.5.2: explain *why* a detection is
wrong).

Rules (Bolya et al., *TIDE*, ECCV 2020, with its thresholds: foreground IoU
``t_f = 0.5``, background IoU ``t_b = 0.1``). Detections are visited by
descending score (ties: detector order); IoUs are MMDetection's
``bbox_overlaps`` (no +1). A detection is

1. **correct**: IoU >= t_f with a same-class GT box not yet matched; it
   takes the one of highest IoU;
2. *ignored* (not counted): otherwise, if it covers an ignored GT region
   (``ignore_flag`` / COCO ``iscrowd``) by intersection-over-detection >= t_f;
3. **classification**: otherwise IoU >= t_f with a GT box of another class;
4. **duplicate**: otherwise IoU >= t_f with a same-class GT box (then already
   matched by a higher-scored correct detection, which it duplicates);
5. **localization**: otherwise t_b <= IoU < t_f with a same-class GT box;
6. **both** (classification and localization): otherwise t_b <= IoU < t_f
   with a GT box of another class;
7. **background**: IoU < t_b with every GT box.

A GT box is *detected* when a correct detection matched it, *covered* when
not detected but referred to by a classification, localization or both error
(that error already counts it, as in TIDE), *ignored* for ignore regions and
otherwise **missed**. The class of a detection's entry is its predicted
class; of a missed GT box, its true class.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

ERROR_TYPES = ('correct', 'localization', 'classification', 'both',
               'duplicate', 'background', 'missed')
#: Types that are errors (everything but ``'correct'``).
ERRORS = ERROR_TYPES[1:]
GT_OUTCOMES = ('detected', 'covered', 'missed', 'ignored')
SIDES = ('x1', 'y1', 'x2', 'y2')
ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]


def _boxes(value: ArrayLike, name: str) -> torch.Tensor:
    """(K, 4) float32 CPU tensor of boxes (x1, y1, x2, y2)."""
    if isinstance(value, torch.Tensor):
        boxes = value.detach().cpu().float()
    else:
        boxes = torch.as_tensor(np.asarray(value, dtype=np.float32))
    boxes = boxes.reshape(-1, 4) if boxes.numel() == 0 else boxes
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f'{name} must be (K, 4) boxes, got shape '
                         f'{tuple(boxes.shape)}')
    return boxes


def _vector(value: Optional[ArrayLike], length: int, name: str,
            dtype=np.int64) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    out = np.asarray(value, dtype=dtype).reshape(-1)
    if len(out) != length:
        raise ValueError(f'{name} has {len(out)} entries for {length} boxes')
    return out


def box_iou(boxes_a: ArrayLike, boxes_b: ArrayLike,
            mode: str = 'iou') -> np.ndarray:
    """IoU (or intersection over ``boxes_a``'s area, ``mode='iof'``) of every
    pair, with MMDetection's ``bbox_overlaps``.

    Args:
        boxes_a: (N, 4) boxes (x1, y1, x2, y2).
        boxes_b: (M, 4) boxes.
        mode (str): ``'iou'`` or ``'iof'``.

    Returns:
        ndarray: (N, M) float32.
    """
    from mmdet.structures.bbox import bbox_overlaps
    a, b = _boxes(boxes_a, 'boxes_a'), _boxes(boxes_b, 'boxes_b')
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    return bbox_overlaps(a, b, mode=mode).numpy()


@dataclass
class ImageErrors:
    """Error types of one image's detections and GT boxes.

    Attributes:
        det_type (list[str]): Per detection, one of :data:`ERROR_TYPES`
            (never ``'missed'``) or ``'ignored'``.
        det_gt (ndarray): (N, ) GT box the type refers to (-1: none, i.e.
            background).
        det_iou (ndarray): (N, ) IoU with ``det_gt`` (background: its
            highest IoU with any GT box).
        det_ref (ndarray): (N, ) a correct detection of the same object:
            the one duplicated (duplicate), the one of ``det_gt``
            (localization, classification, both); -1 if none.
        gt_outcome (list[str]): Per GT box, one of :data:`GT_OUTCOMES`.
        gt_det (ndarray): (M, ) the correct detection that matched it, -1.
    """
    det_type: List[str]
    det_gt: np.ndarray
    det_iou: np.ndarray
    det_ref: np.ndarray
    gt_outcome: List[str]
    gt_det: np.ndarray

    @property
    def missed(self) -> List[int]:
        """Indices of the missed GT boxes."""
        return [g for g, o in enumerate(self.gt_outcome) if o == 'missed']


def classify_detections(det_bboxes: ArrayLike, det_scores: ArrayLike,
                        det_labels: ArrayLike, gt_bboxes: ArrayLike,
                        gt_labels: ArrayLike,
                        gt_ignore: Optional[ArrayLike] = None,
                        fg_iou: float = 0.5,
                        bg_iou: float = 0.1) -> ImageErrors:
    """Sort one image's detections and GT boxes into error types (rules in
    the module docstring).

    Args:
        det_bboxes: (N, 4) detections (x1, y1, x2, y2), same pixels as GT.
        det_scores: (N, ) scores (visiting order).
        det_labels: (N, ) predicted classes.
        gt_bboxes: (M, 4) GT boxes.
        gt_labels: (M, ) GT classes.
        gt_ignore: (M, ) bool, ignore regions (default: none).
        fg_iou (float): t_f.
        bg_iou (float): t_b, <= t_f.

    Returns:
        ImageErrors

    Raises:
        ValueError: Wrong shapes or thresholds.
    """
    if not 0. <= bg_iou <= fg_iou <= 1.:
        raise ValueError(f'need 0 <= bg_iou <= fg_iou <= 1, got bg_iou='
                         f'{bg_iou}, fg_iou={fg_iou}')
    dets, gts = _boxes(det_bboxes, 'det_bboxes'), _boxes(gt_bboxes,
                                                         'gt_bboxes')
    n, m = len(dets), len(gts)
    scores = _vector(det_scores, n, 'det_scores', np.float64)
    labels = _vector(det_labels, n, 'det_labels')
    gt_cls = _vector(gt_labels, m, 'gt_labels')
    ignore = np.zeros(m, bool) if gt_ignore is None else _vector(
        gt_ignore, m, 'gt_ignore', bool)
    iou = box_iou(dets, gts)  # (N, M)
    iof = box_iou(dets, gts, mode='iof')
    det_type = ['background'] * n
    det_gt = np.full(n, -1, np.int64)
    det_iou = np.zeros(n, np.float32)
    gt_det = np.full(m, -1, np.int64)

    def best(row: np.ndarray, allowed: np.ndarray):
        """(index, IoU) of the highest entry of ``row`` where allowed."""
        if not allowed.any():
            return -1, 0.
        masked = np.where(allowed, row, -1.)
        g = int(masked.argmax())
        return g, float(masked[g])

    for i in np.argsort(-scores, kind='stable'):
        same = (gt_cls == labels[i]) & ~ignore
        other = (gt_cls != labels[i]) & ~ignore
        g_free, iou_free = best(iou[i], same & (gt_det < 0))
        g_same, iou_same = best(iou[i], same)
        g_other, iou_other = best(iou[i], other)
        if iou_free >= fg_iou:
            kind, g, value = 'correct', g_free, iou_free
            gt_det[g] = i
        elif ignore.any() and iof[i][ignore].max() >= fg_iou:
            kind, g, value = 'ignored', -1, 0.
        elif iou_other >= fg_iou:
            kind, g, value = 'classification', g_other, iou_other
        elif iou_same >= fg_iou:
            kind, g, value = 'duplicate', g_same, iou_same
        elif iou_same >= bg_iou:
            kind, g, value = 'localization', g_same, iou_same
        elif iou_other >= bg_iou:
            kind, g, value = 'both', g_other, iou_other
        else:
            kind, g = 'background', -1
            value = float(iou[i][~ignore].max()) if (~ignore).any() else 0.
        det_type[i], det_gt[i], det_iou[i] = kind, g, value
    # a correct detection of the same object, known once all are matched
    det_ref = np.full(n, -1, np.int64)
    for i in range(n):
        if det_gt[i] >= 0 and det_type[i] != 'correct':
            det_ref[i] = gt_det[det_gt[i]]
    covering = {int(g) for t, g in zip(det_type, det_gt)
                if t in ('classification', 'localization', 'both')}
    gt_outcome = []
    for g in range(m):
        if ignore[g]:
            gt_outcome.append('ignored')
        elif gt_det[g] >= 0:
            gt_outcome.append('detected')
        elif g in covering:
            gt_outcome.append('covered')
        else:
            gt_outcome.append('missed')
    return ImageErrors(det_type, det_gt, det_iou, det_ref,
                       gt_outcome, gt_det)


def extent_errors(det_box: Sequence[float],
                  gt_box: Sequence[float]) -> Dict[str, float]:
    """Signed error of each box side, in pixels, positive when the detection
    reaches *beyond* the object on that side (too large), negative when it
    cuts into it.

    Returns:
        dict: ``x1 = gt.x1 - det.x1``, ``y1 = gt.y1 - det.y1``,
        ``x2 = det.x2 - gt.x2``, ``y2 = det.y2 - gt.y2``.
    """
    dx1, dy1, dx2, dy2 = (float(v) for v in det_box)
    gx1, gy1, gx2, gy2 = (float(v) for v in gt_box)
    return dict(x1=gx1 - dx1, y1=gy1 - dy1, x2=dx2 - gx2, y2=dy2 - gy2)


def sides_off(errors: Dict[str, float], gt_box: Sequence[float],
              rel_tol: float = 0.1, min_px: float = 2.) -> List[str]:
    """The sides whose error is at least ``max(min_px, rel_tol * object
    width (x1, x2) or height (y1, y2))``, largest relative error first; the
    worst side alone when none is.
    """
    gx1, gy1, gx2, gy2 = (float(v) for v in gt_box)
    size = dict(x1=gx2 - gx1, x2=gx2 - gx1, y1=gy2 - gy1, y2=gy2 - gy1)
    rel = {s: abs(errors[s]) / max(size[s], 1e-6) for s in SIDES}
    order = sorted(SIDES, key=lambda s: -rel[s])
    off = [s for s in order
           if abs(errors[s]) >= max(min_px, rel_tol * size[s])]
    return off or order[:1]


_DIRECTIONS = dict(x1=('left', 'right'), x2=('right', 'left'),
                   y1=('up', 'down'), y2=('down', 'up'))


def describe_extent(side: str, error: float) -> str:
    """``'x2 14 px too far right (beyond the object)'`` and the like."""
    outward, inward = _DIRECTIONS[side]
    if error >= 0:
        return f'{side} {abs(error):.0f} px too far {outward} (beyond the ' \
            'object)'
    return f'{side} {abs(error):.0f} px too far {inward} (cuts into the ' \
        'object)'


@dataclass
class ErrorCounts:
    """Counts of :data:`ERROR_TYPES` over images, overall and per class.

    ``add`` one image's :class:`ImageErrors` at a time; ``summary`` gives the
    table (counts, share of all entries, share of errors).
    """
    class_names: Sequence[str] = ()
    overall: Dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(ERROR_TYPES, 0))
    per_class: Dict[str, Dict[str, int]] = field(default_factory=dict)
    num_images: int = 0

    def class_name(self, label: int) -> str:
        if 0 <= label < len(self.class_names):
            return str(self.class_names[label])
        return f'class {label}'

    def _count(self, kind: str, label: int) -> None:
        self.overall[kind] += 1
        row = self.per_class.setdefault(self.class_name(int(label)),
                                        dict.fromkeys(ERROR_TYPES, 0))
        row[kind] += 1

    def add(self, errors: ImageErrors, det_labels: ArrayLike,
            gt_labels: ArrayLike) -> None:
        """Count one image (``det_labels`` / ``gt_labels`` as classified)."""
        det_labels = _vector(det_labels, len(errors.det_type), 'det_labels')
        gt_labels = _vector(gt_labels, len(errors.gt_outcome), 'gt_labels')
        for kind, label in zip(errors.det_type, det_labels):
            if kind != 'ignored':
                self._count(kind, label)
        for g in errors.missed:
            self._count('missed', gt_labels[g])
        self.num_images += 1

    def summary(self) -> dict:
        """``counts``, ``share`` (of all entries), ``error_share`` (of the
        errors) overall, ``per_class`` counts, ``num_images``."""
        total = sum(self.overall.values())
        num_errors = sum(self.overall[t] for t in ERRORS)
        return dict(
            counts=dict(self.overall),
            share={t: self.overall[t] / total if total else 0.
                   for t in ERROR_TYPES},
            error_share={t: self.overall[t] / num_errors if num_errors else 0.
                         for t in ERRORS},
            per_class={name: dict(row) for name, row in
                       sorted(self.per_class.items())},
            num_images=self.num_images, total=total, num_errors=num_errors)


def format_error_table(summary: dict) -> str:
    """Markdown table: one row per type (count, share of all entries, share
    of errors), then one count column per class."""
    classes = list(summary['per_class'])
    head = ['type', 'count', 'share', 'of errors'] + classes
    rows = [head, ['---'] * len(head)]
    for t in ERROR_TYPES:
        err = summary['error_share'].get(t)
        rows.append([t, str(summary['counts'][t]),
                     f"{100 * summary['share'][t]:.1f}%",
                     '-' if err is None else f'{100 * err:.1f}%'] +
                    [str(summary['per_class'][c][t]) for c in classes])
    rows.append(['total', str(summary['total']), '100.0%',
                 f"{summary['num_errors']} errors"] +
                [str(sum(summary['per_class'][c].values())) for c in classes])
    return '\n'.join('| ' + ' | '.join(r) + ' |' for r in rows)


__all__ = ['ERROR_TYPES', 'ERRORS', 'GT_OUTCOMES', 'SIDES', 'ImageErrors',
           'box_iou', 'classify_detections', 'extent_errors', 'sides_off',
           'describe_extent', 'ErrorCounts', 'format_error_table']
