"""D-RISE (Petsiuk et al., CVPR 2021): black-box saliency for detections.

Random masks occlude the input; the masked images run through the detector's
normal ``predict``; each mask is weighted, for each explained detection, by how
well the masked image still reproduces that detection; the map is the weighted
average of the masks.

Masks (as in RISE): a ``grid_size`` x ``grid_size`` binary grid with keep
probability ``keep_prob`` is upsampled bilinearly to ``(grid_size + 1) * cell``
pixels (``cell = ceil(side / grid_size)``), shifted by a random offset in
``[0, cell)`` and cropped to the network input (unpadded ``img_shape``).
Masking happens in pixel space: a masked pixel turns black (value 0 before
the data preprocessor's normalisation). All grids and shifts of an image are
drawn up front from one ``torch.Generator`` seeded with ``seed``, so the masks
do not depend on ``batch_size`` and a run repeats exactly (other batch sizes
change only the float rounding of the detector's batched forward).

Mask weight for target detection t (box L_t, label c_t):

    w = max_j IoU(L_t, L_j) * cos(P_t, P_j) * O_j

over the masked image's final detections j (the model's own post-processing
and score threshold). MMDetection's outputs carry one label and score per box,
not a class-probability vector, so P is the one-hot vector of the label and
``cos(P_t, P_j) = [c_j == c_t]``. For a single-class detector (CrowdHuman,
the synthetic crowd) this factor is trivially 1: any overlapping box of any
object counts, the weakness the ODAM paper blames for D-RISE's failure on
CrowdHuman. ``O_j`` is the objectness; MMDetection's detectors expose none
separately (YOLO-style heads fold it into the score), so by default
``objectness='none'`` uses 1; ``objectness='score'`` uses the masked
detection's confidence as a surrogate.

Map: ``sum_i w_i M_i / num_masks`` on the input grid, resized to the original
image and min-max normalised to [0, 1] per detection. D-RISE explains the
whole detection vector, so every requested target gets the same map.
"""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from torch import Tensor

from ..registry import EXPLAINERS
from ..structures import HeatMaps
from .odam import TARGETS


def generate_grids(num_masks: int, grid_size: int, keep_prob: float,
                   cell: Tuple[int, int], generator: torch.Generator
                   ) -> Tuple[Tensor, Tensor]:
    """Random binary grids and shifts of all masks of one image.

    Args:
        num_masks (int): Number of masks.
        grid_size (int): Cells per side.
        keep_prob (float): Probability that a cell is kept (1).
        cell (tuple): (cell_h, cell_w) in pixels.
        generator (torch.Generator): Random source.

    Returns:
        tuple[Tensor, Tensor]: Grids (num_masks, grid_size, grid_size) float
        in {0, 1}; shifts (num_masks, 2) long (dy, dx), dy in [0, cell_h).
    """
    grids = (torch.rand((num_masks, grid_size, grid_size),
                        generator=generator) < keep_prob).float()
    dy = torch.randint(0, cell[0], (num_masks, ), generator=generator)
    dx = torch.randint(0, cell[1], (num_masks, ), generator=generator)
    return grids, torch.stack([dy, dx], dim=1)


def grids_to_masks(grids: Tensor, shifts: Tensor, size: Tuple[int, int],
                   cell: Tuple[int, int]) -> Tensor:
    """Smooth masks from binary grids: bilinear upsampling, shift, crop.

    Args:
        grids (Tensor): (M, g, g) in {0, 1}.
        shifts (Tensor): (M, 2) long (dy, dx).
        size (tuple): (H, W) of the masks.
        cell (tuple): (cell_h, cell_w), with ``g * cell >= (H, W)``.

    Returns:
        Tensor: Masks (M, H, W) in [0, 1].
    """
    num, g = grids.shape[0], grids.shape[-1]
    up = F.interpolate(grids[:, None], size=((g + 1) * cell[0],
                                             (g + 1) * cell[1]),
                       mode='bilinear', align_corners=False)[:, 0]
    height, width = size
    rows = shifts[:, 0:1] + torch.arange(height)[None]
    cols = shifts[:, 1:2] + torch.arange(width)[None]
    index = torch.arange(num)[:, None, None]
    # bilinear weights may overshoot 1 by a rounding error
    return up[index, rows[:, :, None], cols[:, None, :]].clamp_(0, 1)


def drise_weights(target_boxes: Tensor, target_labels: Tensor,
                  boxes: Tensor, labels: Tensor,
                  objectness: Tensor) -> Tensor:
    """Weight of one masked image for each target detection.

    ``max_j IoU(t, j) * [label_j == label_t] * objectness_j`` (0 when the
    masked image has no detection).

    Args:
        target_boxes (Tensor): (T, 4).
        target_labels (Tensor): (T, ).
        boxes (Tensor): Masked image's detections, (M, 4).
        labels (Tensor): (M, ).
        objectness (Tensor): (M, ).

    Returns:
        Tensor: (T, ).
    """
    if len(boxes) == 0:
        return target_boxes.new_zeros(len(target_boxes))
    lt = torch.maximum(target_boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(target_boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_t = (target_boxes[:, 2:] - target_boxes[:, :2]).clamp(min=0).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(-1)
    iou = inter / (area_t[:, None] + area[None] - inter).clamp(min=1e-12)
    same = (target_labels[:, None] == labels[None]).to(iou)
    return (iou * same * objectness[None].to(iou)).amax(dim=1)


def minmax_normalize(maps: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale each map (..., H, W) to [0, 1]; a constant map becomes zero."""
    flat = maps.flatten(-2)
    low = flat.amin(-1)[..., None, None]
    high = flat.amax(-1)[..., None, None]
    return (maps - low) / (high - low).clamp(min=eps)


def pixel_affine(model, like: Tensor) -> Tuple[Tensor, Tensor]:
    """(mean, std), (C, 1, 1), of the data preprocessor's normalisation
    (0 and 1 without one), as ``like``'s dtype and device; ``like`` is a
    batch (B, C, H, W)."""
    pre = model.data_preprocessor
    if getattr(pre, '_enable_normalize', False):
        return pre.mean.to(like), pre.std.to(like)
    ones = like.new_ones((like.shape[1], 1, 1))
    return ones * 0, ones


@EXPLAINERS.register_module()
class DRISE:
    """D-RISE explainer (see the module docstring for every choice).

    Args:
        num_masks (int): Random masks per image (paper: 5000).
        grid_size (int): Mask grid cells per side (paper: 16).
        keep_prob (float): Probability that a grid cell is kept.
        batch_size (int): Masked images per ``model.predict`` call.
        seed (int): Seed of the masks; the same for every image.
        objectness (str): ``'none'`` (O = 1) or ``'score'`` (confidence as
            objectness surrogate).
    """

    def __init__(self, num_masks: int = 5000, grid_size: int = 16,
                 keep_prob: float = 0.5, batch_size: int = 32, seed: int = 0,
                 objectness: str = 'none') -> None:
        if num_masks < 1 or grid_size < 1 or batch_size < 1:
            raise ValueError('num_masks, grid_size and batch_size must be '
                             '>= 1')
        if not 0 < keep_prob <= 1:
            raise ValueError(f'keep_prob must be in (0, 1], got {keep_prob}')
        if objectness not in ('none', 'score'):
            raise ValueError(f"objectness must be 'none' or 'score', got "
                             f'{objectness!r}')
        self.num_masks = int(num_masks)
        self.grid_size = int(grid_size)
        self.keep_prob = float(keep_prob)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.objectness = objectness

    # ------------------------------------------------------------------
    def explain_batch(self, model, inputs: Tensor,
                      data_samples: List[DetDataSample],
                      targets: Sequence[str] = ('score', ),
                      score_thr: float = 0.3) -> List[DetDataSample]:
        """Explain every detection of a preprocessed batch.

        Args:
            model: MMDetection detector (eval mode).
            inputs (Tensor): Preprocessed images (B, 3, H, W).
            data_samples (list[DetDataSample]): With image metainfo.
            targets (Sequence[str]): Names of the output maps (from
                ``TARGETS``); all get the same D-RISE map.
            score_thr (float): Detections scoring below it are dropped.

        Returns:
            list[DetDataSample]: ``pred_instances`` with ``bboxes``,
            ``scores``, ``labels`` and ``heatmaps`` (``HeatMaps``, N x T
            on the original image, in [0, 1]); ``metainfo['targets']``.
        """
        targets = tuple(targets)
        unknown = [t for t in targets if t not in TARGETS]
        if unknown or not targets:
            raise ValueError(f'unknown targets {unknown}; choose from '
                             f'{TARGETS}')
        outputs = []
        with torch.no_grad():
            for img_idx, sample in enumerate(data_samples):
                outputs.append(self._explain_image(
                    model, inputs[img_idx:img_idx + 1], sample, targets,
                    score_thr))
        return outputs

    # ------------------------------------------------------------------
    def _predict(self, model, inputs: Tensor, sample: DetDataSample) -> list:
        samples = [DetDataSample(metainfo=sample.metainfo)
                   for _ in range(len(inputs))]
        return [s.pred_instances for s in
                model.predict(inputs, samples, rescale=True)]

    def _explain_image(self, model, inputs: Tensor, sample: DetDataSample,
                       targets: tuple, score_thr: float) -> DetDataSample:
        meta = sample.metainfo
        base = self._predict(model, inputs, sample)[0]
        base = base[base.scores >= score_thr]
        height, width = (int(v) for v in meta['img_shape'][:2])
        ori_h, ori_w = (int(v) for v in meta['ori_shape'][:2])
        saliency = inputs.new_zeros((len(base), height * width))
        if len(base):
            cell = (math.ceil(height / self.grid_size),
                    math.ceil(width / self.grid_size))
            gen = torch.Generator().manual_seed(self.seed)
            grids, shifts = generate_grids(self.num_masks, self.grid_size,
                                           self.keep_prob, cell, gen)
            mean, std = pixel_affine(model, inputs)
            # black pixel (0) in the normalised input
            black = (-mean / std)[None]
            for start in range(0, self.num_masks, self.batch_size):
                masks = grids_to_masks(grids[start:start + self.batch_size],
                                       shifts[start:start + self.batch_size],
                                       (height, width), cell).to(inputs)
                batch = inputs.repeat(len(masks), 1, 1, 1)
                region = batch[:, :, :height, :width]
                batch[:, :, :height, :width] = region * masks[:, None] + \
                    black * (1 - masks[:, None])
                weights = torch.stack([
                    drise_weights(
                        base.bboxes, base.labels, p.bboxes, p.labels,
                        p.scores if self.objectness == 'score' else
                        torch.ones_like(p.scores))
                    for p in self._predict(model, batch, sample)], dim=1)
                saliency += weights.to(saliency) @ masks.flatten(1)
            saliency /= self.num_masks
        maps = saliency.view(-1, 1, height, width)
        if (height, width) != (ori_h, ori_w):
            maps = F.interpolate(maps, size=(ori_h, ori_w), mode='bilinear',
                                 align_corners=False) if len(base) else \
                maps.new_zeros((0, 1, ori_h, ori_w))
        maps = minmax_normalize(maps[:, 0])
        out = DetDataSample(metainfo=meta)
        out.set_metainfo(dict(targets=targets))
        pred = base.new()
        pred.bboxes = base.bboxes
        pred.scores = base.scores
        pred.labels = base.labels
        # one map explains the detection; every target shows it
        pred.heatmaps = HeatMaps.from_dense(
            maps[:, None].expand(-1, len(targets), -1, -1).contiguous(),
            targets, img_shape=meta['img_shape'][:2])
        out.pred_instances = pred
        return out


__all__ = ['DRISE', 'generate_grids', 'grids_to_masks', 'drise_weights',
           'minmax_normalize', 'pixel_affine']
