"""Explain a detector's errors on one image (paper App. A.5.2).

:func:`explain_image_errors` detects and explains an image once with ODAM,
sorts its detections and GT boxes into error types
(:mod:`mmdet_odam.evaluation.error_analysis`) and, per error, picks the maps
that answer *why*:

* **localization** (and the localization part of **both**): the map of each
  box side that is off (:func:`~mmdet_odam.evaluation.error_analysis.
  sides_off`: by how many pixels, which way), beside the same side's map of
  the correct detection of that object when there is one;
* **classification** (and **both**): the predicted class's score map, and
  the true class's score map on the same candidate (:func:`true_class_maps`);
* **duplicate**: the score maps of the duplicate and of the correct
  detection it repeats, their box IoU, the cosine correlation of the maps
  on Odam-NMS's common grid (short edge 50 cells) and what Odam-NMS's rule
  (Algorithm 1, :func:`mmdet_odam.models.odam_nms.duplicate_matrix`, default
  thresholds T_iou 0.5, T_low 0.2, T_high 0.8) decides for that pair. The
  detector's Odam-NMS compares class-logit maps of pre-NMS candidates; here
  the final detections' score maps stand in for them;
* **missed**: the maps and score of the detector's best candidate for the
  object (:func:`missed_object_candidates`), or "no candidate";
* **background**: the score map.

Every record also carries all attribute maps of its detection. Maps are
(H, W) float32 arrays in [0, 1] on the original image.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..evaluation.error_analysis import (ImageErrors, box_iou,
                                         classify_detections,
                                         describe_extent, extent_errors,
                                         sides_off)
from ..explainers import TARGETS
from .explain import explain

#: Odam-NMS's thresholds used for the duplicate verdict (paper, FCOS).
ODAM_NMS_THRESHOLDS = dict(iou_threshold=0.5, t_low=0.2, t_high=0.8)
#: Short edge of the grid the duplicate maps are correlated on (Odam-NMS).
CORRELATION_GRID = 50


def _class_name(label: int, class_names: Sequence[str]) -> str:
    if 0 <= label < len(class_names):
        return str(class_names[label])
    return f'class {label}'


def _box(values) -> List[float]:
    return [round(float(v), 1) for v in values]


def correlation_grid(shape: Tuple[int, int],
                     short_edge: int = CORRELATION_GRID) -> Tuple[int, int]:
    """(h, w) of a grid whose short edge is ``short_edge`` cells, with the
    image's aspect ratio (never larger than the image)."""
    h, w = shape
    scale = min(1., short_edge / max(min(h, w), 1))
    return max(1, round(h * scale)), max(1, round(w * scale))


def odam_nms_verdict(box_kept, box_other, map_kept: torch.Tensor,
                     map_other: torch.Tensor,
                     iou_threshold: float = 0.5, t_low: float = 0.2,
                     t_high: float = 0.8) -> dict:
    """What Odam-NMS decides for a (higher-scored, lower-scored) pair.

    Args:
        box_kept, box_other: (4, ) boxes.
        map_kept, map_other (Tensor): Their maps, same (h, w).

    Returns:
        dict: ``iou``, ``correlation`` (cosine), ``removed`` (bool: the
        lower-scored one is a duplicate by Algorithm 1), ``rule`` (a
        sentence).
    """
    from ..models.odam_nms import (duplicate_matrix, map_correlation,
                                   pairwise_iou)
    boxes = torch.tensor([list(box_kept), list(box_other)],
                         dtype=torch.float32)
    iou = pairwise_iou(boxes[:1], boxes[1:])
    maps = torch.stack([map_kept, map_other]).float()
    corr = map_correlation(maps[:1], maps[1:])
    informative = (maps.flatten(1).amax(1) > 0).all().reshape(1, 1)
    removed = bool(duplicate_matrix(iou, corr, informative, iou_threshold,
                                    t_high, t_low)[0, 0])
    i, c = float(iou), float(corr)
    if not bool(informative):
        rule = f'a map is empty: IoU {i:.2f} alone decides'
    elif i > iou_threshold:
        rule = (f'IoU {i:.2f} > {iou_threshold} and correlation {c:.2f} '
                + (f'>= {t_low}: same object, removed' if removed else
                   f'< {t_low}: different objects, kept'))
    else:
        rule = (f'IoU {i:.2f} <= {iou_threshold} and correlation {c:.2f} '
                + (f'> {t_high}: same object, removed' if removed else
                   f'<= {t_high}: kept'))
    return dict(iou=i, correlation=c, removed=removed, rule=rule)


# -- candidates beyond the final detections ---------------------------------
def true_class_maps(model, image, det_index: int, true_label: int,
                    explainer, sample) -> Optional[dict]:
    """The true class's score map on a misclassified detection's own
    candidate.

    Returns:
        dict | None: ``score`` (the candidate's true-class score) and
        ``maps`` (target -> (H, W)), or None when the detector gives no
        such candidate (a detector whose candidates are not rescored per
        class).
    """
    return None


def missed_object_candidates(model, image, sample, gt_box, gt_label: int,
                             explainer, below: np.ndarray) -> Optional[dict]:
    """The detector's best candidate for a missed object.

    Among the explained detections under the report's score threshold
    (``below``, the detector's own final output down to its test
    ``score_thr``), the one of the object's class with the highest IoU.

    Returns:
        dict | None: ``index`` (row of ``sample``), ``score``, ``box``,
        ``iou``, or None when no such detection overlaps the object.
    """
    pred = sample.pred_instances
    labels = pred.labels.cpu().numpy()
    rows = [int(i) for i in below if labels[i] == gt_label]
    if not rows:
        return None
    ious = box_iou(pred.bboxes[rows], np.asarray([gt_box]))[:, 0]
    best = int(np.argmax(ious))
    if ious[best] <= 0:
        return None
    i = rows[best]
    return dict(index=i, score=float(pred.scores[i]),
                box=_box(pred.bboxes[i]), iou=float(ious[best]))


# -- one image ---------------------------------------------------------------
def _maps_of(sample, index: int) -> Dict[str, np.ndarray]:
    """All maps of one explained row, target -> (H, W) float32."""
    targets = list(sample.metainfo['targets'])
    maps = sample.pred_instances.heatmaps.render([index])[0].cpu().numpy()
    return dict(zip(targets, maps))


def explain_image_errors(model, image: np.ndarray, gt_bboxes, gt_labels,
                         gt_ignore=None, explainer=None,
                         class_names: Sequence[str] = (),
                         score_thr: float = 0.3, candidate_thr: float = 0.0,
                         fg_iou: float = 0.5, bg_iou: float = 0.1
                         ) -> Tuple[ImageErrors, dict, List[dict]]:
    """Detect, classify and explain the errors of one image.

    Args:
        model: Detector (see :func:`mmdet_odam.apis.explain`).
        image (ndarray): (H, W, 3) uint8 BGR.
        gt_bboxes: (M, 4) GT boxes in the image's pixels.
        gt_labels: (M, ) GT classes.
        gt_ignore: (M, ) bool ignore regions.
        explainer: ODAM explainer (config, name or built).
        class_names (Sequence[str]): Label names.
        score_thr (float): Detections at least this good are analysed.
        candidate_thr (float): Lower detections down to this (and the
            detector's own test threshold) are explained as candidates for
            missed objects.
        fg_iou, bg_iou (float): TIDE's t_f and t_b.

    Returns:
        tuple: The :class:`ImageErrors` of the analysed detections, a dict
        (``det_bboxes``, ``det_scores``, ``det_labels`` of those), and one
        record per detection and per missed object (``kind``, numbers,
        ``panels``: list of (title, map, boxes) to draw, ``attribute_maps``:
        target -> map, ``note``). Correct detections get a record too
        (``kind='correct'``, no panels), so a report can count them.
    """
    sample = explain(model, image, explainer=explainer, targets=TARGETS,
                     score_thr=min(candidate_thr, score_thr))
    pred = sample.pred_instances
    scores = pred.scores.detach().cpu().numpy()
    analysed = np.nonzero(scores >= score_thr)[0]
    below = np.nonzero(scores < score_thr)[0]
    bboxes = pred.bboxes.detach().cpu().numpy()[analysed]
    labels = pred.labels.detach().cpu().numpy()[analysed]
    gt_bboxes = np.asarray(gt_bboxes, np.float32).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
    errors = classify_detections(bboxes, scores[analysed], labels, gt_bboxes,
                                 gt_labels, gt_ignore, fg_iou, bg_iou)
    grid = correlation_grid(tuple(sample.metainfo['ori_shape'][:2]))
    records = []
    for k, kind in enumerate(errors.det_type):
        if kind == 'ignored':
            continue
        row = int(analysed[k])
        label = int(labels[k])
        rec = dict(kind=kind, det=k, label=label,
                   class_name=_class_name(label, class_names),
                   score=float(scores[row]), box=_box(bboxes[k]),
                   iou=float(errors.det_iou[k]), panels=[], note='')
        g, ref = int(errors.det_gt[k]), int(errors.det_ref[k])
        if g >= 0:
            rec.update(gt_box=_box(gt_bboxes[g]), gt_label=int(gt_labels[g]),
                       true_class=_class_name(int(gt_labels[g]),
                                              class_names))
        if ref >= 0:
            rec.update(ref_det=ref, ref_box=_box(bboxes[ref]),
                       ref_score=float(scores[analysed[ref]]))
        if kind == 'correct':
            records.append(rec)
            continue
        maps = _maps_of(sample, row)
        rec['attribute_maps'] = maps
        ref_maps = _maps_of(sample, int(analysed[ref])) if ref >= 0 else None
        if kind in ('localization', 'both'):
            errs = extent_errors(bboxes[k], gt_bboxes[g])
            off = sides_off(errs, gt_bboxes[g])
            rec['extent_error'] = {s: round(v, 1) for s, v in errs.items()}
            rec['sides_off'] = off
            rec['note'] = '; '.join(describe_extent(s, errs[s]) for s in off)
            for side in off:
                rec['panels'].append((f'this detection: {side} map',
                                      maps[side], 'det'))
                if ref_maps is not None:
                    rec['panels'].append((f'correct detection: {side} map',
                                          ref_maps[side], 'ref'))
            if ref_maps is None:
                rec['note'] += '; no correct detection of this object'
        if kind in ('classification', 'both'):
            rec['panels'].insert(0, (f"predicted '{rec['class_name']}': "
                                     'score map', maps['score'], 'det'))
            other = true_class_maps(model, image, row, int(gt_labels[g]),
                                    explainer, sample)
            if other is None:
                rec['note'] = '; '.join(filter(None, [
                    rec['note'], f"true class '{rec['true_class']}': no "
                    'rescored candidate available, predicted class only']))
            else:
                rec['true_score'] = other['score']
                rec['panels'].insert(1, (
                    f"true '{rec['true_class']}': score map",
                    other['maps']['score'], 'det'))
        if kind == 'duplicate':
            rec['panels'] = [('duplicate: score map', maps['score'], 'det'),
                             ('correct detection: score map',
                              ref_maps['score'], 'ref')]
            small = sample.pred_instances.heatmaps.render(
                [int(analysed[ref]), row], targets=['score'], size=grid)[:, 0]
            verdict = odam_nms_verdict(bboxes[ref], bboxes[k], small[0],
                                       small[1], **ODAM_NMS_THRESHOLDS)
            rec.update(pair_iou=verdict['iou'],
                       correlation=verdict['correlation'],
                       odam_nms_removes=verdict['removed'])
            rec['note'] = 'Odam-NMS: ' + verdict['rule']
        if kind == 'background':
            rec['panels'] = [('score map', maps['score'], 'det')]
            rec['note'] = f'IoU {rec["iou"]:.2f} with the nearest object'
        records.append(rec)
    for g in errors.missed:
        label = int(gt_labels[g])
        rec = dict(kind='missed', det=-1, label=label,
                   class_name=_class_name(label, class_names),
                   true_class=_class_name(label, class_names),
                   gt_box=_box(gt_bboxes[g]), gt_label=label, panels=[],
                   score=0., iou=0.)
        cand = missed_object_candidates(model, image, sample, gt_bboxes[g],
                                        label, explainer, below)
        if cand is None:
            rec['note'] = 'no candidate of this class overlaps the object'
        else:
            maps = _maps_of(sample, cand['index'])
            rec.update(score=cand['score'], iou=cand['iou'],
                       box=cand['box'], attribute_maps=maps)
            rec['panels'] = [('best candidate: score map', maps['score'],
                              'det'),
                             ('best candidate: combined map',
                              maps['combined'], 'det')]
            rec['note'] = (f"best candidate scores {cand['score']:.3f} < "
                           f'{score_thr} (IoU {cand["iou"]:.2f})')
        records.append(rec)
    dets = dict(det_bboxes=bboxes, det_scores=scores[analysed],
                det_labels=labels)
    return errors, dets, records


__all__ = ['explain_image_errors', 'odam_nms_verdict', 'correlation_grid',
           'true_class_maps', 'missed_object_candidates',
           'ODAM_NMS_THRESHOLDS']
