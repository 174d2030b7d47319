"""A detector wrapper whose ``test_step`` explains its detections.

:class:`ExplainedDetector` lets MMEngine's ``Runner.test()`` (and so its
distributed launchers) evaluate explanations over a dataset: each test batch is
preprocessed by the wrapped detector's data preprocessor, explained by an
explainer from ``mmdet_odam.registry.EXPLAINERS`` (which also detects), and
returned as ``DetDataSample`` s carrying ``pred_instances.heatmaps`` and the
batch's ``gt_instances``, for :class:`ExplanationMetric`.

Deletion and Insertion need the detector, so they run here, for the
well-detected GT objects only (the protocol of :func:`match_well_detected`),
and travel to the metric as ``gt_instances.deletion_curve`` /
``insertion_curve`` (G, num_steps + 1), normalised by the explained
detection's original score (``nan`` rows for objects not evaluated):

* Perturbations act on the network input (resized, normalised image; the
  padded border is untouched); the heat map is resized bilinearly to it.
* Step rule: ``num_steps`` steps (paper: 100) of ``GT-box area / num_steps``
  input pixels each, most important first (:func:`steps_for_area`).
* Deletion fill: uniform random pixel values in [0, 255] per channel (one
  image drawn from ``seed``), normalised like the input. Insertion start: the
  blank image 0 after normalisation, i.e. the preprocessor's mean colour.
* Tracked score: the best pre-NMS candidate of the explained class whose box
  has IoU > ``track_iou`` (0.5) with the original detection
  (:func:`tracked_score`). Dense heads give their candidates via
  ``predict_by_feat(..., with_nms=False)`` (after their own ``score_thr`` and
  ``nms_pre``); other families fall back to the final detections.

Timing: ``metainfo['explain_time']`` is the batch's explainer wall time split
evenly over its images, ``metainfo['num_explained']`` the image's number of
explained detections; the metric reports their ratio of sums.

Checkpoints of the plain detector load as they are: keys without the
``detector.`` prefix are moved under it.
"""
import time
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.models.detectors import SingleStageDetector
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import get_box_tensor
from mmengine.model import BaseModel
from torch import Tensor, nn

from .explanation_metrics import (match_well_detected, perturbation_curve,
                                  steps_for_area, tracked_score)

DEFAULT_PERTURBATION = dict(num_steps=100, batch_size=16, track_iou=0.5,
                            seed=0)


def candidate_predictions(detector, inputs: Tensor,
                          data_samples: Sequence[DetDataSample]) -> list:
    """Pre-NMS candidates (dense heads) or final detections (others).

    Args:
        detector: MMDetection detector (eval mode).
        inputs (Tensor): Preprocessed batch (B, 3, H, W).
        data_samples (Sequence[DetDataSample]): Metainfo per image.

    Returns:
        list[InstanceData]: Per image ``bboxes`` (original pixels),
        ``scores``, ``labels``.
    """
    if isinstance(detector, SingleStageDetector) and isinstance(
            detector.bbox_head, BaseDenseHead):
        feats = detector.extract_feat(inputs)
        outs = detector.bbox_head(feats)
        return detector.bbox_head.predict_by_feat(
            *outs, batch_img_metas=[ds.metainfo for ds in data_samples],
            rescale=True, with_nms=False)
    samples = [DetDataSample(metainfo=ds.metainfo) for ds in data_samples]
    return [s.pred_instances for s in
            detector.predict(inputs, samples, rescale=True)]


@MODELS.register_module()
class ExplainedDetector(BaseModel):
    """Detector + explainer as one MMEngine model (module docstring).

    Args:
        detector (dict | nn.Module): The detector config or module.
        explainer (dict | object): ``dict(type='ODAM', ...)`` or a built
            explainer.
        targets (Sequence[str]): Explained targets (``'score'`` must be one of
            them for the metric and the perturbations).
        score_thr (float): Detections below it are neither explained nor
            matched to GT objects.
        match_iou (float): Well-detected IoU threshold (paper: 0.9).
        perturbation (dict, optional): ``num_steps``, ``batch_size``,
            ``track_iou``, ``seed`` of Deletion / Insertion; None skips them.
        init_cfg (dict, optional): MMEngine init config.
    """

    def __init__(self, detector: Union[dict, nn.Module],
                 explainer: Union[dict, object] = dict(type='ODAM'),
                 targets: Sequence[str] = ('score', ),
                 score_thr: float = 0.3, match_iou: float = 0.9,
                 perturbation: Optional[dict] = DEFAULT_PERTURBATION,
                 init_cfg: Optional[dict] = None) -> None:
        if isinstance(detector, dict):
            detector = MODELS.build(detector)
        super().__init__(data_preprocessor=detector.data_preprocessor,
                         init_cfg=init_cfg)
        self.detector = detector
        from ..apis.explain import build_explainer  # avoid an import cycle
        self.explainer = build_explainer(explainer)
        self.targets = tuple(targets)
        self.score_thr = float(score_thr)
        self.match_iou = float(match_iou)
        self.perturbation = None if perturbation is None else {
            **DEFAULT_PERTURBATION, **dict(perturbation)}
        self.register_load_state_dict_pre_hook(self._prefix_detector_keys)

    @property
    def checkpoint_module(self) -> nn.Module:
        """The module plain detector checkpoints are for (strict loading
        compares their weights with it)."""
        return self.detector

    @staticmethod
    def _prefix_detector_keys(module, state_dict: dict, prefix: str,
                              *args) -> None:
        """Load plain-detector checkpoints: move keys under ``detector.``."""
        own = (prefix + 'detector.', prefix + 'data_preprocessor.')
        for key in list(state_dict):
            if key.startswith(prefix) and not key.startswith(own):
                state_dict[prefix + 'detector.' + key[len(prefix):]] = \
                    state_dict.pop(key)

    # ------------------------------------------------------------------
    def forward(self, inputs: Tensor, data_samples=None,
                mode: str = 'predict'):
        """``'predict'``: explained samples; ``'tensor'``: the detector's raw
        outputs. Training is not supported."""
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.detector(inputs, data_samples, mode='tensor')
        raise RuntimeError(f'ExplainedDetector only evaluates; mode {mode!r} '
                           'is not supported')

    def predict(self, inputs: Tensor, data_samples: List[DetDataSample]
                ) -> List[DetDataSample]:
        """Explain a preprocessed batch and add the perturbation curves.

        Args:
            inputs (Tensor): (B, 3, H, W).
            data_samples (list[DetDataSample]): With metainfo and (for the
                curves) ``gt_instances`` in original pixels.

        Returns:
            list[DetDataSample]: The explainer's samples with ``gt_instances``
            (plus ``deletion_curve``/``insertion_curve``), ``explain_time``
            and ``num_explained`` metainfo.
        """
        self.detector.eval()
        start = time.perf_counter()
        outputs = self.explainer.explain_batch(
            self.detector, inputs, data_samples, targets=self.targets,
            score_thr=self.score_thr)
        elapsed = time.perf_counter() - start
        for img_idx, (out, sample) in enumerate(zip(outputs, data_samples)):
            out.set_metainfo(dict(
                explain_time=elapsed / max(1, len(outputs)),
                num_explained=len(out.pred_instances)))
            if 'gt_instances' in sample:
                out.gt_instances = sample.gt_instances
                if self.perturbation is not None:
                    self._add_curves(inputs[img_idx], out)
            if 'ignored_instances' in sample:
                out.ignored_instances = sample.ignored_instances
        return outputs

    # ------------------------------------------------------------------
    def _add_curves(self, inputs: Tensor, out: DetDataSample) -> None:
        gt, pred = out.gt_instances, out.pred_instances
        gt_boxes = get_box_tensor(gt.bboxes).to(inputs.device).float()
        num_steps = int(self.perturbation['num_steps'])
        curves = {k: gt_boxes.new_full((len(gt), num_steps + 1), float('nan'))
                  for k in ('deletion', 'insertion')}
        match = match_well_detected(gt_boxes, pred.bboxes, gt.labels,
                                    pred.labels, self.match_iou)
        targets = out.metainfo['targets']
        slot = targets.index('score') if 'score' in targets else 0
        for g in (match >= 0).nonzero()[:, 0].tolist():
            m = int(match[g])
            for mode, curve in self.perturbation_curves(
                    inputs, out.metainfo, pred.heatmaps[m, slot],
                    pred.bboxes[m], int(pred.labels[m]), float(pred.scores[m]),
                    gt_boxes[g]).items():
                curves[mode][g] = curve.to(curves[mode])
        gt.deletion_curve = curves['deletion']
        gt.insertion_curve = curves['insertion']

    def perturbation_curves(self, inputs: Tensor, meta: dict,
                            heatmap: Tensor, box: Tensor, label: int,
                            score: float, gt_box: Tensor
                            ) -> Dict[str, Tensor]:
        """Deletion and Insertion curves of one explained detection.

        Args:
            inputs (Tensor): The preprocessed image (3, H_pad, W_pad).
            meta (dict): Its metainfo.
            heatmap (Tensor): The detection's map (H_ori, W_ori).
            box (Tensor): The detection's box (4, ), original pixels.
            label (int): Its class.
            score (float): Its original score (the normaliser).
            gt_box (Tensor): The matched GT box (4, ), original pixels (its
                area sets the step).

        Returns:
            dict[str, Tensor]: ``deletion`` and ``insertion``, each
            (num_steps + 1, ), divided by ``score``.
        """
        cfg = self.perturbation
        height, width = (int(v) for v in meta['img_shape'][:2])
        saliency = F.interpolate(heatmap[None, None].float(),
                                 size=(height, width), mode='bilinear',
                                 align_corners=False)[0, 0]
        sf_w, sf_h = meta.get('scale_factor', (1.0, 1.0))[:2]
        area = float((gt_box[2] - gt_box[0]) * sf_w *
                     (gt_box[3] - gt_box[1]) * sf_h)
        step = steps_for_area(area, cfg['num_steps'])
        image = inputs[:, :height, :width]
        pre = self.detector.data_preprocessor
        if getattr(pre, '_enable_normalize', False):
            mean, std = pre.mean.to(inputs), pre.std.to(inputs)
        else:
            mean, std = inputs.new_zeros((3, 1, 1)), inputs.new_ones((3, 1, 1))
        gen = torch.Generator().manual_seed(int(cfg['seed']))
        noise = torch.rand(image.shape, generator=gen).to(inputs) * 255.0
        fills = dict(deletion=(noise - mean) / std,
                     insertion=torch.zeros_like(image))
        sample = DetDataSample(metainfo=meta)

        def score_fn(batch: Tensor) -> Tensor:
            full = inputs[None].repeat(len(batch), 1, 1, 1)
            full[:, :, :height, :width] = batch
            with torch.no_grad():
                cands = candidate_predictions(self.detector, full,
                                              [sample] * len(batch))
            return torch.tensor([
                tracked_score(c.bboxes, c.scores, c.labels, box, label,
                              cfg['track_iou']) for c in cands])

        return {mode: perturbation_curve(
                    image, saliency, score_fn, mode, cfg['num_steps'], step,
                    fills[mode], cfg['batch_size']) / max(score, 1e-12)
                for mode in ('deletion', 'insertion')}


__all__ = ['ExplainedDetector', 'candidate_predictions']
