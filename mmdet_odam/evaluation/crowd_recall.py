"""Recall of "crowd" and "sparse" ground truth (ODAM paper, App. A.4.2).

CrowdDet (Chu et al., 2020) and the ODAM paper split the ground truth of a
CrowdHuman-format set into a *crowd* set -- full-body boxes that overlap some
other (non-ignored) box of the same image with IoU > 0.5 -- and a *sparse* set
(all other non-ignored boxes), and report the recall of each at the detection
score threshold that gives the best Jaccard Index (Tables 7 and 9).

:class:`CrowdHumanRecallMetric` adds this breakdown to MMDetection's
:class:`~mmdet.evaluation.CrowdHumanMetric` (AP50, MR^-2 and JI stay
MMDetection's); the matching itself is in the pure functions
:func:`crowd_gt_mask` and :func:`greedy_match_recall`.

Matching rule used for recall (documented here because the paper does not
spell it out): detections with ``score >= score_thr`` are visited in
descending score order (stable for ties); each one is assigned to the
still-unmatched non-ignored GT box with which it has the highest IoU, if that
IoU is ``>= iou_thr`` (0.5); a GT box is *recalled* when some detection was
assigned to it (greedy one-to-one matching). Ignore regions (CrowdHuman tag
'mask' or ``extra.ignore != 0``) are neither counted as ground truth nor used
to decide crowdedness; as in CrowdHuman's Caltech-style matching a detection
only falls back to an ignore region when it matches no valid box, so ignore
regions never take a detection away from a valid box.
"""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.logging import MMLogger

from mmdet.evaluation.functional import bbox_overlaps
from mmdet.evaluation.metrics import CrowdHumanMetric
from mmdet.registry import METRICS

# Score thresholds at which ``CrowdHumanMetric.eval_ji`` evaluates JI (it
# loops ``1e-1 * i for i in range(10)`` and reports the maximum); mirrored here
# only to name the threshold of each recorded JI value.
JI_SCORE_THRS = tuple(1e-1 * i for i in range(10))

SUBSETS = ('all', 'sparse', 'crowd')


def crowd_gt_mask(boxes: np.ndarray, iou_thr: float = 0.5) -> np.ndarray:
    """Which boxes overlap another box of the same image with IoU > iou_thr.

    Args:
        boxes (np.ndarray): (N, 4) boxes (x1, y1, x2, y2) of one image; pass
            only non-ignored GT boxes.
        iou_thr (float): Strict IoU threshold (paper: 0.5).

    Returns:
        np.ndarray: (N, ) bool, True for the "crowd" set.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) < 2:
        return np.zeros(len(boxes), dtype=bool)
    ious = bbox_overlaps(boxes, boxes, mode='iou')
    np.fill_diagonal(ious, 0.0)  # a box never makes itself crowded
    return (ious > iou_thr).any(axis=1)


def greedy_match_recall(det_boxes: np.ndarray,
                        det_scores: np.ndarray,
                        gt_boxes: np.ndarray,
                        gt_ignore: Optional[np.ndarray] = None,
                        score_thr: float = 0.0,
                        iou_thr: float = 0.5) -> np.ndarray:
    """Which GT boxes are recalled under greedy one-to-one matching.

    Detections with ``score >= score_thr`` are visited by descending score;
    each takes the unmatched non-ignored GT box of highest IoU if that IoU is
    ``>= iou_thr``. Ignored GT boxes take no detection and are never recalled.

    Args:
        det_boxes (np.ndarray): (M, 4) detections (x1, y1, x2, y2).
        det_scores (np.ndarray): (M, ) detection scores.
        gt_boxes (np.ndarray): (N, 4) ground-truth boxes.
        gt_ignore (np.ndarray, optional): (N, ) bool, True for ignore regions.
            Defaults to no ignore region.
        score_thr (float): Minimum score of a detection (inclusive).
        iou_thr (float): Minimum IoU of a match (inclusive).

    Returns:
        np.ndarray: (N, ) bool, True where the GT box is recalled.
    """
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    recalled = np.zeros(len(gt_boxes), dtype=bool)
    valid = np.ones(len(gt_boxes), dtype=bool) if gt_ignore is None else \
        ~np.asarray(gt_ignore, dtype=bool).reshape(-1)
    keep = det_scores >= score_thr
    if not keep.any() or not valid.any():
        return recalled
    order = np.argsort(-det_scores[keep], kind='stable')
    ious = bbox_overlaps(det_boxes[keep][order], gt_boxes, mode='iou')
    ious[:, ~valid] = -1.0  # ignore regions never take a detection
    for row in ious:
        row = np.where(recalled, -1.0, row)  # one detection per GT box
        best = int(np.argmax(row))
        if row[best] >= iou_thr:
            recalled[best] = True
    return recalled


def recall_counts(recalled: np.ndarray, crowd: np.ndarray) -> Dict[str, int]:
    """GT and recalled counts of the all / sparse / crowd sets of one image.

    Args:
        recalled (np.ndarray): (N, ) bool over non-ignored GT boxes.
        crowd (np.ndarray): (N, ) bool crowd mask of the same boxes.

    Returns:
        dict: ``num_gt_{all,sparse,crowd}`` and
        ``num_recalled_{all,sparse,crowd}``.
    """
    recalled = np.asarray(recalled, dtype=bool)
    crowd = np.asarray(crowd, dtype=bool)
    masks = dict(all=np.ones_like(crowd), sparse=~crowd, crowd=crowd)
    counts = {}
    for name in SUBSETS:
        counts[f'num_gt_{name}'] = int(masks[name].sum())
        counts[f'num_recalled_{name}'] = int((recalled & masks[name]).sum())
    return counts


def format_recall_table(counts: Dict[str, Union[int, float]],
                        score_thr: Optional[float] = None) -> str:
    """Small text table like the paper's Table 7 (one detector column).

    Args:
        counts (dict): ``num_gt_*`` and ``num_recalled_*`` for
            ``all`` / ``sparse`` / ``crowd``.
        score_thr (float, optional): Score threshold shown in the header.

    Returns:
        str: Rows Total / Sparse / Crowd with GT count, recalled count and %.
    """
    header = 'recalled' if score_thr is None else \
        f'recalled (score >= {score_thr:.1f})'
    lines = [f'{"":8s} {"GT":>8s}  {header}']
    for name, title in zip(SUBSETS, ('Total', 'Sparse', 'Crowd')):
        gt = int(counts[f'num_gt_{name}'])
        hit = int(counts[f'num_recalled_{name}'])
        pct = 100.0 * hit / gt if gt else float('nan')
        lines.append(f'{title:8s} {gt:8d}  {hit:d} ({pct:.1f}%)')
    return '\n'.join(lines)


@METRICS.register_module()
class CrowdHumanRecallMetric(CrowdHumanMetric):
    """CrowdHuman AP/MR/JI plus the crowd / sparse recall breakdown.

    AP, MR and JI are computed by :class:`~mmdet.evaluation.CrowdHumanMetric`
    unchanged. The recall breakdown (module docstring) uses the same GT and
    detections after the parent's loading and clipping, at the score
    threshold where the parent's JI is best (its thresholds 0.0, 0.1, ...,
    0.9; the first on ties), unless ``recall_score_thr`` fixes one.

    Added outputs (with the ``crowd_human/`` prefix): ``best_ji_score_thr``,
    ``recall_{all,sparse,crowd}`` (fractions), ``num_gt_{all,sparse,crowd}``,
    ``num_recalled_{all,sparse,crowd}``, and ``max_recall`` (recall of all GT
    using every detection, i.e. threshold 0: the "Recall" of Table 5).

    Args:
        *args: Positional arguments of ``CrowdHumanMetric``.
        crowd_iou_thr (float): A GT box is "crowd" if its IoU with another
            non-ignored GT box of its image is > this. Defaults to 0.5.
        recall_iou_thr (float): Minimum IoU of a recall match. Defaults to
            0.5.
        recall_score_thr (float, optional): Fixed score threshold for the
            recall breakdown instead of the best-JI one. Defaults to None.
        **kwargs: Keyword arguments of ``CrowdHumanMetric`` (``ann_file``,
            ``metric``, ``eval_mode`` (0 or 1 here), ``num_ji_process``...).
    """

    def __init__(self,
                 *args,
                 crowd_iou_thr: float = 0.5,
                 recall_iou_thr: float = 0.5,
                 recall_score_thr: Optional[float] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.eval_mode not in (0, 1):
            raise ValueError('CrowdHumanRecallMetric supports eval_mode 0 '
                             '(full body) and 1 (head), got 2')
        self.crowd_iou_thr = crowd_iou_thr
        self.recall_iou_thr = recall_iou_thr
        self.recall_score_thr = recall_score_thr
        self._eval_samples: Optional[dict] = None
        self._ji_curve: Optional[List[float]] = None

    # -- hooks into the parent's evaluation, no re-implementation ------------
    def load_eval_samples(self, result_file: str) -> dict:
        """Parent's loading; keeps the samples for the recall breakdown."""
        self._eval_samples = super().load_eval_samples(result_file)
        return self._eval_samples

    def gather(self, results: list):
        """Parent's per-threshold JI aggregation; records each mean JI.

        ``eval_ji`` calls ``self.gather`` once per score threshold, in the
        parent process, so this collects the JI curve without re-computing it.
        """
        line, mean_ratio = super().gather(results)
        if self._ji_curve is not None:
            self._ji_curve.append(float(mean_ratio))
        return line, mean_ratio

    def eval_ji(self, samples: dict) -> float:
        """Parent's JI (max over thresholds); records the JI curve."""
        self._ji_curve = []
        ji = super().eval_ji(samples)
        if len(self._ji_curve) != len(JI_SCORE_THRS):
            raise RuntimeError('CrowdHumanMetric.eval_ji changed: expected '
                               f'{len(JI_SCORE_THRS)} JI thresholds, got '
                               f'{len(self._ji_curve)}')
        return ji

    # -- evaluation -----------------------------------------------------------
    def compute_metrics(self, results: list) -> Dict[str, float]:
        """AP / MR / JI of the parent plus the recall breakdown.

        Args:
            results (list): ``(ann, (M, 5) [x1, y1, x2, y2, score])`` per
                image, as ``CrowdHumanMetric.process`` stores them.

        Returns:
            dict: Parent's metrics and the keys listed in the class docstring.
        """
        logger: MMLogger = MMLogger.get_current_instance()
        self._eval_samples, self._ji_curve = None, None
        eval_results = super().compute_metrics(results)
        samples = self._eval_samples
        if self.format_only or samples is None:
            return eval_results
        if self._ji_curve is None:  # 'JI' not requested: still need its curve
            self.eval_ji(samples)
        best = int(np.argmax(self._ji_curve))  # first maximum, as max()
        best_thr = round(JI_SCORE_THRS[best], 4)
        logger.info('JI per score threshold: ' + ', '.join(
            f'{t:.1f}: {j:.4f}' for t, j in zip(JI_SCORE_THRS,
                                                 self._ji_curve)))
        score_thr = best_thr if self.recall_score_thr is None else \
            self.recall_score_thr
        counts = self.recall_breakdown(samples.values(), score_thr)
        max_counts = self.recall_breakdown(samples.values(), 0.0)
        logger.info('Crowd / sparse recall (IoU >= '
                    f'{self.recall_iou_thr}):\n' +
                    format_recall_table(counts, score_thr))

        eval_results['best_ji_score_thr'] = best_thr
        for name in SUBSETS:
            gt = counts[f'num_gt_{name}']
            eval_results[f'recall_{name}'] = round(
                counts[f'num_recalled_{name}'] / gt, 4) if gt else float('nan')
        gt_all = max_counts['num_gt_all']
        eval_results['max_recall'] = round(
            max_counts['num_recalled_all'] / gt_all, 4) if gt_all else \
            float('nan')
        eval_results.update(counts)
        self._eval_samples, self._ji_curve = None, None
        return eval_results

    def recall_breakdown(self, samples: Sequence, score_thr: float
                         ) -> Dict[str, int]:
        """Summed crowd / sparse / all counts over evaluation samples.

        Args:
            samples (Sequence): mmdet ``crowdhuman_metric.Image`` objects
                (``gt_boxes`` (N, 5) with tag -1 for ignore, ``dt_boxes``
                (M, 5) with the score last).
            score_thr (float): Minimum detection score (inclusive).

        Returns:
            dict: ``num_gt_*`` and ``num_recalled_*`` for all/sparse/crowd.
        """
        total = {f'num_{kind}_{name}': 0 for kind in ('gt', 'recalled')
                 for name in SUBSETS}
        for sample in samples:
            gt = sample.gt_boxes
            valid = gt[:, -1] != -1
            crowd = crowd_gt_mask(gt[valid, :4], self.crowd_iou_thr)
            dt = sample.dt_boxes
            recalled = greedy_match_recall(dt[:, :4], dt[:, -1], gt[:, :4],
                                           ~valid, score_thr,
                                           self.recall_iou_thr)
            for key, value in recall_counts(recalled[valid], crowd).items():
                total[key] += value
        return total
