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

from ..evaluation.error_analysis import (ImageErrors, classify_detections,
                                         describe_extent, extent_errors,
                                         sides_off)
from ..explainers import TARGETS
from ..explainers.candidates import CORRELATION_GRID_SHORT_EDGE
from ..models.candidate_maps import common_grid_size
from .explain import explain



def _class_name(label: int, class_names: Sequence[str]) -> str:
    if 0 <= label < len(class_names):
        return str(class_names[label])
    return f'class {label}'


def _box(values) -> List[float]:
    return [round(float(v), 2) for v in values]


def odam_nms_verdict(box_kept, box_other, map_kept: torch.Tensor,
                     map_other: torch.Tensor,
                     iou_threshold: float = 0.5, t_low: float = 0.2,
                     t_high: float = 0.8) -> dict:
    """What Odam-NMS decides for a (higher-scored, lower-scored) pair
    (thresholds default to ``OdamNMS``'s: the paper's FCOS values).

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
def _rows_by_reference(sample) -> Dict[int, int]:
    """Explained row of each reference (``ref_index``) of a candidates
    explanation."""
    refs = sample.pred_instances.ref_index.cpu().tolist()
    return {int(r): row for row, r in enumerate(refs)}


def true_class_maps(model, image, det_rows: Sequence[int],
                    true_labels: Sequence[int], explainer,
                    score_thr: float) -> Dict[int, dict]:
    """The true class's maps on misclassified detections' own candidates
    (:class:`~mmdet_odam.explainers.candidates.OtherClasses`).

    Args:
        det_rows (Sequence[int]): Rows of the final detections scoring at
            least ``score_thr`` (as :func:`explain` returns them).
        true_labels (Sequence[int]): The class to rescore each for.

    Returns:
        dict: det row -> ``score`` (that candidate's score for the true
        class) and ``maps`` (target -> (H, W)).
    """
    from ..explainers.candidates import OtherClasses
    out = {}
    for label in sorted(set(true_labels)):
        rows = [r for r, t in zip(det_rows, true_labels) if t == label]
        sample = explain(model, image, explainer=explainer, targets=TARGETS,
                         score_thr=score_thr,
                         candidates=OtherClasses([label], det_index=rows))
        for ref, row in _rows_by_reference(sample).items():
            out[ref] = dict(score=float(sample.pred_instances.scores[row]),
                            maps=_maps_of(sample, row))
    return out


def missed_object_candidates(model, image, gt_boxes, gt_labels, explainer,
                             min_iou: float = 0.5) -> List[Optional[dict]]:
    """The detector's best candidate for each missed object, anywhere in
    the detector and whatever its score
    (:class:`~mmdet_odam.explainers.candidates.MatchedCandidates`: the
    best-scoring candidate of the object's class with IoU >= ``min_iou``,
    else the one of highest IoU).

    Returns:
        list: Per box ``score``, ``box``, ``iou`` and ``maps``, or None if
        the detector returned no candidate for it.
    """
    from ..explainers.candidates import MatchedCandidates
    boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    if not len(boxes):
        return []
    sample = explain(model, image, explainer=explainer, targets=TARGETS,
                     candidates=MatchedCandidates(
                         boxes, [int(v) for v in gt_labels], min_iou))
    pred = sample.pred_instances
    found = _rows_by_reference(sample)
    out = []
    for m in range(len(boxes)):
        row = found.get(m)
        out.append(None if row is None else dict(
            score=float(pred.scores[row]), box=_box(pred.bboxes[row]),
            iou=float(pred.ref_iou[row]), maps=_maps_of(sample, row)))
    return out


# -- one image ---------------------------------------------------------------
def _maps_of(sample, index: int) -> Dict[str, np.ndarray]:
    """All maps of one explained row, target -> (H, W) float32."""
    targets = list(sample.metainfo['targets'])
    maps = sample.pred_instances.heatmaps.render([index])[0].cpu().numpy()
    return dict(zip(targets, maps))


def explain_image_errors(model, image: np.ndarray, gt_bboxes, gt_labels,
                         gt_ignore=None, explainer=None,
                         class_names: Sequence[str] = (),
                         score_thr: float = 0.3, fg_iou: float = 0.5,
                         bg_iou: float = 0.1
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
                     score_thr=score_thr)
    pred = sample.pred_instances
    scores = pred.scores.detach().cpu().numpy()
    analysed = np.arange(len(scores))  # rows: the detections >= score_thr
    bboxes = pred.bboxes.detach().cpu().numpy()[analysed]
    labels = pred.labels.detach().cpu().numpy()[analysed]
    gt_bboxes = np.asarray(gt_bboxes, np.float32).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
    errors = classify_detections(bboxes, scores[analysed], labels, gt_bboxes,
                                 gt_labels, gt_ignore, fg_iou, bg_iou)
    wrong_class = [k for k, t in enumerate(errors.det_type)
                   if t in ('classification', 'both')]
    true_class = true_class_maps(
        model, image, wrong_class,
        [int(gt_labels[errors.det_gt[k]]) for k in wrong_class], explainer,
        score_thr) if wrong_class else {}
    # maps compared on Odam-NMS's grid, as ref_correlation does
    grid = common_grid_size(sample.metainfo['ori_shape'][:2],
                            CORRELATION_GRID_SHORT_EDGE)
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
            other = true_class.get(k)
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
                                       small[1])
            rec.update(pair_iou=verdict['iou'],
                       correlation=verdict['correlation'],
                       odam_nms_removes=verdict['removed'])
            rec['note'] = 'Odam-NMS: ' + verdict['rule']
        if kind == 'background':
            rec['panels'] = [('score map', maps['score'], 'det')]
            rec['note'] = f'IoU {rec["iou"]:.2f} with the nearest object'
        records.append(rec)
    candidates = missed_object_candidates(
        model, image, gt_bboxes[errors.missed], gt_labels[errors.missed],
        explainer) if errors.missed else []
    for g, cand in zip(errors.missed, candidates):
        label = int(gt_labels[g])
        rec = dict(kind='missed', det=-1, label=label,
                   class_name=_class_name(label, class_names),
                   true_class=_class_name(label, class_names),
                   gt_box=_box(gt_bboxes[g]), gt_label=label, panels=[],
                   score=0., iou=0.)
        if cand is None:
            rec['cause'] = 'no candidate'
            rec['note'] = 'the detector has no candidate for this object'
        else:
            maps = cand['maps']
            rec.update(score=cand['score'], iou=cand['iou'],
                       box=cand['box'], attribute_maps=maps)
            rec['panels'] = [('best candidate: score map', maps['score'],
                              'det'),
                             ('best candidate: combined map',
                              maps['combined'], 'det')]
            if cand['score'] >= score_thr:  # scored enough: NMS removed it
                rec['cause'] = 'removed by NMS'
                why = f">= {score_thr}, but NMS removed it"
            else:
                rec['cause'] = 'score below the threshold'
                why = f'< {score_thr}'
            rec['note'] = (f"best candidate of its class scores "
                           f"{cand['score']:.3f} {why} (IoU "
                           f"{cand['iou']:.2f})")
        records.append(rec)
    dets = dict(det_bboxes=bboxes, det_scores=scores[analysed],
                det_labels=labels)
    return errors, dets, records


__all__ = ['explain_image_errors', 'odam_nms_verdict', 'true_class_maps',
           'missed_object_candidates']
