"""MMEngine evaluator of explanation quality (ODAM paper, Sec. 4.2).

:class:`ExplanationMetric` consumes samples carrying ``pred_instances`` with
``heatmaps`` (``HeatMaps`` or an (N, T, H, W) tensor) in original image
pixels (any explainer of ``mmdet_odam.registry.EXPLAINERS``) and
``gt_instances`` with boxes in original pixels and, optionally, masks. Each
GT object whose best same-class prediction has IoU > ``match_iou`` (0.9) is
evaluated with that prediction's ``score``
map (the first map when no ``score`` target was explained). Metrics, averaged
over evaluated objects with ``nanmean`` (see
:mod:`~mmdet_odam.evaluation.explanation_metrics` for the definitions):

============================  ==============================================
key                           meaning
============================  ==============================================
``pg_box`` / ``pg_mask``      Pointing Game accuracy, % (GT box / mask)
``epg_box`` / ``epg_mask``    energy-based Pointing Game, %
``compactness``               heat-map compactness (lower is better)
``odi_box`` / ``odi_mask``    object discrimination index, % (lower better)
``vea_auc``                   area under the VEA curve (T = 0.1..0.9)
``deletion_auc``              Deletion AUC, % of the original score (lower
                              better); needs ``gt_instances.deletion_curve``
``insertion_auc``             Insertion AUC, % (higher better)
``sec_per_explanation``       explainer seconds / explained detections
``num_objects``               evaluated (well-detected) GT objects
``num_gt`` / ``num_images``   GT objects / images seen
============================  ==============================================

Mask metrics are ``nan`` without GT masks, perturbation AUCs without curves
(:class:`ExplainedDetector` adds them). After :meth:`compute_metrics`,
``self.curves`` holds the mean Deletion, Insertion and VEA curves (and
``out_file``, when given, a json of metrics and curves).
"""
import math
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.registry import METRICS
from mmdet.structures.bbox import get_box_tensor
from mmengine.evaluator import BaseMetric
from mmengine.fileio import dump
from torch import Tensor

from .explanation_metrics import (VEA_THRESHOLDS, box_region, compactness,
                                  curve_auc, energy_pointing_game,
                                  match_well_detected,
                                  object_discrimination_index, pointing_game,
                                  union_regions, vea_auc, vea_curve)

PERCENT_KEYS = ('pg_box', 'pg_mask', 'epg_box', 'epg_mask', 'odi_box',
                'odi_mask', 'deletion_auc', 'insertion_auc')
SCALAR_KEYS = PERCENT_KEYS + ('compactness', 'vea_auc')


def _get(obj, key, default=None):
    """Field of a dict or a data element."""
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default) if key in obj else default


def masks_to_tensor(masks, shape: Sequence[int]) -> Optional[Tensor]:
    """GT masks (BitmapMasks, ndarray or Tensor) as bool (G, H, W) in
    ``shape``; None when absent. Other sizes are resized (nearest)."""
    if masks is None:
        return None
    if hasattr(masks, 'to_ndarray'):
        masks = masks.to_ndarray()
    masks = torch.as_tensor(np.asarray(masks) if not isinstance(
        masks, Tensor) else masks).cpu()
    if masks.dim() != 3:
        return None
    if tuple(masks.shape[-2:]) != tuple(shape):
        masks = F.interpolate(masks[:, None].float(), size=tuple(shape),
                              mode='nearest')[:, 0]
    return masks.to(torch.bool)


def object_metrics(heatmap: Tensor, index: int, boxes: Tensor,
                   masks: Optional[Tensor],
                   thresholds: Sequence[float] = VEA_THRESHOLDS) -> dict:
    """All map-only metrics of one explained GT object.

    Args:
        heatmap (Tensor): Its map (H, W) in [0, 1].
        index (int): The object's row in ``boxes`` / ``masks``.
        boxes (Tensor): All GT boxes of the image (G, 4).
        masks (Tensor, optional): All GT masks (G, H, W), bool.
        thresholds (Sequence[float]): VEA thresholds.

    Returns:
        dict: ``pg_box``, ``epg_box``, ``compactness``, ``odi_box``,
        ``pg_mask``, ``epg_mask``, ``odi_mask`` (floats; nan without masks)
        and ``vea`` (list of IoUs; nan without masks).
    """
    shape = heatmap.shape[-2:]
    regions = [box_region(b, shape) for b in boxes.tolist()]
    others = union_regions([r for k, r in enumerate(regions) if k != index],
                           shape)
    out = dict(
        pg_box=pointing_game(heatmap, regions[index]),
        epg_box=energy_pointing_game(heatmap, regions[index]),
        compactness=compactness(heatmap, boxes[index].tolist()),
        odi_box=object_discrimination_index(heatmap, regions[index], others))
    if masks is None:
        nan = float('nan')
        out.update(pg_mask=nan, epg_mask=nan, odi_mask=nan,
                   vea=[nan] * len(thresholds))
        return out
    others_m = union_regions([m for k, m in enumerate(masks) if k != index],
                             shape)
    out.update(
        pg_mask=pointing_game(heatmap, masks[index]),
        epg_mask=energy_pointing_game(heatmap, masks[index]),
        odi_mask=object_discrimination_index(heatmap, masks[index],
                                             others_m),
        vea=vea_curve(heatmap, masks[index], thresholds).tolist())
    return out


def nanmean(values: List[float]) -> float:
    """Mean ignoring nan (nan when nothing is left)."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)] if arr.size else arr
    return float(arr.mean()) if arr.size else float('nan')


def mean_curve(curves: List[List[float]]) -> List[float]:
    """Element-wise nanmean of equally long curves ([] when none)."""
    rows = [c for c in curves if c is not None and not any(
        math.isnan(v) for v in c)]
    if not rows:
        return []
    return np.mean(np.asarray(rows, dtype=np.float64), axis=0).tolist()


@METRICS.register_module()
class ExplanationMetric(BaseMetric):
    """Explanation metrics over a dataset (module docstring).

    Args:
        match_iou (float): IoU a GT object's best prediction must exceed.
        thresholds (Sequence[float]): VEA thresholds.
        out_file (str, optional): Json path for metrics and mean curves.
        collect_device (str): ``'cpu'`` or ``'gpu'`` for distributed collect.
        prefix (str): Metric name prefix (default ``'explain'``).
    """

    default_prefix: Optional[str] = 'explain'

    def __init__(self, match_iou: float = 0.9,
                 thresholds: Sequence[float] = VEA_THRESHOLDS,
                 out_file: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.match_iou = float(match_iou)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.out_file = out_file
        self.curves: dict = {}

    def process(self, data_batch, data_samples: Sequence) -> None:
        """Evaluate the explained objects of each sample.

        Args:
            data_batch: Unused.
            data_samples (Sequence[dict | DetDataSample]): Explained samples
                with ``pred_instances.heatmaps`` and ``gt_instances``.
        """
        for sample in data_samples:
            pred = _get(sample, 'pred_instances')
            gt = _get(sample, 'gt_instances')
            # one result per sample: MMEngine's collect_results truncates the
            # list to the dataset size
            self.results.append(dict(
                time=float(_get(sample, 'explain_time', 0.0)),
                num_explained=int(_get(sample, 'num_explained',
                                       len(_get(pred, 'scores', [])))),
                objects=[] if gt is None or pred is None else
                self._objects(sample, pred, gt)))

    def _objects(self, sample, pred, gt) -> List[dict]:
        heatmaps = _get(pred, 'heatmaps')
        boxes = get_box_tensor(_get(gt, 'bboxes')).detach().cpu().float()
        if heatmaps is None or len(boxes) == 0:
            return [dict(kind='gt')] * len(boxes)
        targets = tuple(_get(sample, 'targets', ()) or ())
        slot = targets.index('score') if 'score' in targets else 0
        maps = heatmaps[:, slot].detach().cpu().float()
        masks = masks_to_tensor(_get(gt, 'masks'), maps.shape[-2:])
        match = match_well_detected(
            boxes, get_box_tensor(_get(pred, 'bboxes')).detach().cpu(),
            _get(gt, 'labels'), _get(pred, 'labels'), self.match_iou)
        curves = {k: _get(gt, f'{k}_curve') for k in ('deletion', 'insertion')}
        records = []
        for g in range(len(boxes)):
            if int(match[g]) < 0:
                records.append(dict(kind='gt'))
                continue
            rec = dict(kind='object', score=float(
                _get(pred, 'scores')[int(match[g])]))
            rec.update(object_metrics(maps[int(match[g])], g, boxes, masks,
                                      self.thresholds))
            for key, value in curves.items():
                if value is not None:
                    rec[key] = value[g].detach().cpu().double().tolist()
            records.append(rec)
        return records

    def compute_metrics(self, results: list) -> dict:
        """Average the per-object records (module docstring for keys)."""
        images = results
        records = [o for r in results for o in r['objects']]
        objects = [o for o in records if o['kind'] == 'object']
        num_gt = len(records)
        metrics = {}
        for key in ('pg_box', 'pg_mask', 'epg_box', 'epg_mask', 'odi_box',
                    'odi_mask', 'compactness'):
            metrics[key] = nanmean([r[key] for r in objects])
        vea = mean_curve([r['vea'] for r in objects])
        metrics['vea_auc'] = vea_auc(torch.tensor(vea), self.thresholds) \
            if vea else float('nan')
        curves = dict(vea_thresholds=list(self.thresholds), vea=vea)
        for key in ('deletion', 'insertion'):
            rows = [r[key] for r in objects if key in r]
            curves[key] = mean_curve(rows)
            metrics[f'{key}_auc'] = nanmean(
                [curve_auc(torch.tensor(c)) for c in rows])
        for key in PERCENT_KEYS:
            metrics[key] *= 100.0
        explained = sum(r['num_explained'] for r in images)
        metrics['sec_per_explanation'] = (
            sum(r['time'] for r in images) / explained if explained else
            float('nan'))
        metrics['num_objects'] = len(objects)
        metrics['num_gt'] = num_gt
        metrics['num_images'] = len(images)
        self.curves = curves
        if self.out_file:
            dump(dict(metrics=metrics, curves=curves), self.out_file,
                 indent=2)
        return metrics


__all__ = ['ExplanationMetric', 'object_metrics', 'masks_to_tensor']
