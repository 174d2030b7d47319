"""CAMERAS-style multi-scale fusion (Jalwana et al., CVPR 2021) for ODAM and
Grad-CAM / Grad-CAM++.

CAMERAS accumulates the *activations and back-propagated gradients* of the
explained layer over several upsampled copies of the input and forms one map
from the fused pair, instead of averaging final maps. Here, per explained
detection:

1. The input (already preprocessed) is resized by each factor of ``scales``
   (bilinear on the unpadded image, then padded as the data preprocessor
   pads); the image metainfo (``img_shape``, ``scale_factor``, pad shapes)
   follows, so every scale's detections come back in original pixels.
2. The detection at the reference scale 1.0 defines the explained targets
   (its own exact candidate, as in the base explainer). At another scale the
   explained candidate is the final detection that the adapter reports with
   the highest IoU (in original pixels) with the reference box among those of
   the same class; with no same-class overlap that scale adds no gradient for
   it. Matching by IoU is unavoidable across different inputs.
3. The base explainer's gradients (its adapter, fast or exact path) for that
   candidate, and the explained feature maps, are brought onto each level's
   grid at the largest scale (:func:`to_common_grid`: the valid, unpadded
   cells resized bilinearly onto the valid cells there, zero in the padding;
   the largest scale's own maps unchanged). Fusion is per feature level
   index: activations are averaged
   over all scales, gradients over all scales (zero where the candidate does
   not reach that level at that scale, e.g. an FPN detection that moves up a
   level when the image grows). FPN levels share the head, so the per-level
   sum of maps remains a map of one detection.
4. The map of each level is formed from the fused pair with the base's own
   weighting (``heatmap.odam_map`` with its ``smooth`` / ``grad_mode``; the
   Grad-CAM++ weights for a Grad-CAM++ base), sampled to the original image
   from the largest scale's grid (placing cells by the base's
   ``cell_position``), summed (or max) over levels, and scaled to [0, 1] as
   the base does. Adaptive smoothing uses the box size at the largest scale.
   The resize between scales treats cells as blocks (``'grid'``); with a
   ``'receptive_field'`` base, the smaller scales' cells are off by at most
   (s - 1) / 2 * (1 / f - 1 / f_max) original pixels (1.75 px for stride 8
   and scales 1 / 2).

With ``scales=(1.0, )`` every step is the identity and the result equals the
base explainer's (up to the float summation order of Grad-CAM's global mean,
< 1e-5). RoI-grid features (``feature='roi'``) are not supported:
their grid is not an image grid that can be resized across scales.
"""
import math
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmengine.registry import DefaultScope
from torch import Tensor

from ..registry import EXPLAINERS
from .adapters import ATTRIBUTES, ForwardState, build_adapter
from .heatmap import feature_to_image, odam_map
from .odam import ODAM, TARGETS, paste_windows_nchw


def rescale_input(inputs: Tensor, meta: dict, factor: float,
                  pad_size_divisor: int = 1, pad_value: float = 0.0
                  ) -> Tuple[Tensor, dict]:
    """Resize one preprocessed image by ``factor`` and update its metainfo.

    Args:
        inputs (Tensor): (1, C, H_pad, W_pad) preprocessed batch of one image.
        meta (dict): Its metainfo (``img_shape``, ``scale_factor``, ...).
        factor (float): Scale factor.
        pad_size_divisor (int): Pad height and width to multiples of it.
        pad_value (float): Padding value (the preprocessor's).

    Returns:
        tuple[Tensor, dict]: (1, C, H', W') input and the new metainfo.
    """
    height, width = (int(v) for v in meta['img_shape'][:2])
    new_h = max(1, int(round(height * factor)))
    new_w = max(1, int(round(width * factor)))
    image = inputs[..., :height, :width]
    if (new_h, new_w) != (height, width):
        image = F.interpolate(image, size=(new_h, new_w), mode='bilinear',
                              align_corners=False)
    div = max(1, int(pad_size_divisor))
    pad_h, pad_w = math.ceil(new_h / div) * div, math.ceil(new_w / div) * div
    image = F.pad(image, (0, pad_w - new_w, 0, pad_h - new_h),
                  value=pad_value)
    sf_w, sf_h = meta.get('scale_factor', (1.0, 1.0))[:2]
    new_meta = dict(meta)
    new_meta.update(img_shape=(new_h, new_w), pad_shape=(pad_h, pad_w),
                    batch_input_shape=(pad_h, pad_w),
                    scale_factor=(sf_w * new_w / width, sf_h * new_h / height))
    return image, new_meta


def resize_grid(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of (..., H, W) maps; the identity for equal sizes."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    lead = x.shape[:-2]
    out = F.interpolate(x.reshape(-1, 1, *x.shape[-2:]), size=tuple(size),
                        mode='bilinear', align_corners=False)
    return out.reshape(*lead, *size)


def valid_cells(img_shape: Sequence[int], stride: int,
                map_shape: Sequence[int]) -> Tuple[int, int]:
    """(rows, cols) of a stride-``stride`` map covering the unpadded image."""
    return (min(math.ceil(int(img_shape[0]) / stride), int(map_shape[0])),
            min(math.ceil(int(img_shape[1]) / stride), int(map_shape[1])))


def to_common_grid(x: Tensor, img_shape: Sequence[int], stride: int,
                   big_img_shape: Sequence[int], big_stride: int,
                   big_map_shape: Sequence[int]) -> Tensor:
    """Bring one scale's level map onto the largest scale's level grid.

    The valid (unpadded) cells are resized bilinearly onto the valid cells of
    the big grid and the rest of it (padding) is zero. A map already on the
    big grid of the same image size is returned unchanged (single scale: the
    identity).

    Args:
        x (Tensor): Maps (..., H, W) of a level at one scale.
        img_shape (Sequence[int]): That scale's unpadded input (h, w).
        stride (int): The level's stride at that scale.
        big_img_shape (Sequence[int]): The largest scale's input (h, w).
        big_stride (int): The level's stride at the largest scale.
        big_map_shape (Sequence[int]): The level's (H, W) there.

    Returns:
        Tensor: (..., *big_map_shape).
    """
    if tuple(x.shape[-2:]) == tuple(big_map_shape) and \
            tuple(img_shape[:2]) == tuple(big_img_shape[:2]):
        return x
    rows, cols = valid_cells(img_shape, stride, x.shape[-2:])
    big_rows, big_cols = valid_cells(big_img_shape, big_stride, big_map_shape)
    out = resize_grid(x[..., :rows, :cols], (big_rows, big_cols))
    return F.pad(out, (0, int(big_map_shape[1]) - big_cols, 0,
                       int(big_map_shape[0]) - big_rows))


def best_iou_match(ref_boxes: Tensor, ref_labels: Tensor, boxes: Tensor,
                   labels: Tensor) -> Tensor:
    """Index of the same-class box with the highest IoU per reference box.

    Args:
        ref_boxes (Tensor): (N, 4).
        ref_labels (Tensor): (N, ).
        boxes (Tensor): (M, 4).
        labels (Tensor): (M, ).

    Returns:
        Tensor: Long (N, ); -1 where no same-class box overlaps at all.
    """
    out = torch.full((len(ref_boxes), ), -1, dtype=torch.long,
                     device=ref_boxes.device)
    if len(ref_boxes) == 0 or len(boxes) == 0:
        return out
    lt = torch.maximum(ref_boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(ref_boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_r = (ref_boxes[:, 2:] - ref_boxes[:, :2]).clamp(min=0).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(-1)
    iou = inter / (area_r[:, None] + area[None] - inter).clamp(min=1e-12)
    iou = torch.where(ref_labels[:, None] == labels[None], iou,
                      torch.zeros_like(iou))
    best, index = iou.max(dim=1)
    return torch.where(best > 0, index, out)


@EXPLAINERS.register_module()
class CAMERAS:
    """Multi-scale fusion of a gradient explainer (module docstring).

    Args:
        base (dict | ODAM): The fused explainer: ``dict(type='ODAM', ...)``,
            ``'GradCAM'`` or ``'GradCAMPlusPlus'`` (any ODAM subclass).
        scales (Sequence[float]): Input scale factors. The targets always
            come from scale 1.0, which need not be among them.
    """

    def __init__(self, base=dict(type='ODAM'),
                 scales: Sequence[float] = (1.0, 1.5, 2.0)) -> None:
        if isinstance(base, dict):
            with DefaultScope.overwrite_default_scope('mmdet_odam'):
                base = EXPLAINERS.build(base)
        if not isinstance(base, ODAM):
            raise TypeError('CAMERAS fuses gradient explainers (ODAM and its '
                            f'subclasses), got {type(base).__name__}')
        if base.feature == 'roi':
            raise ValueError("CAMERAS cannot fuse RoI-grid features "
                             "(feature='roi'); use 'neck' or 'backbone'")
        scales = tuple(float(s) for s in scales)
        if not scales or min(scales) <= 0:
            raise ValueError(f'scales must be positive, got {scales}')
        self.base = base
        self.scales = scales

    # ------------------------------------------------------------------
    def explain_batch(self, model, inputs: Tensor,
                      data_samples: List[DetDataSample],
                      targets: Sequence[str] = TARGETS,
                      score_thr: float = 0.3) -> List[DetDataSample]:
        """Explain every detection of a preprocessed batch (same contract as
        :meth:`ODAM.explain_batch`)."""
        targets = tuple(targets)
        unknown = [t for t in targets if t not in TARGETS]
        if unknown or not targets:
            raise ValueError(f'unknown targets {unknown}; choose from '
                             f'{TARGETS}')
        slots = [ATTRIBUTES.index(t) if t != 'combined' else -1
                 for t in targets]
        if 'combined' in targets:
            slots += [a for a in range(len(ATTRIBUTES)) if a not in slots]
        adapter = build_adapter(model, self.base.feature,
                                self.base.score_target)
        outputs = []
        with torch.enable_grad():
            for img_idx, sample in enumerate(data_samples):
                outputs.append(self._explain_image(
                    model, adapter, inputs[img_idx:img_idx + 1], sample,
                    targets, slots, score_thr))
        return outputs

    # ------------------------------------------------------------------
    def _forward(self, model, adapter, inputs: Tensor, sample: DetDataSample,
                 factor: float) -> Tuple[ForwardState, dict]:
        pre = model.data_preprocessor
        if factor == 1.0:
            scaled, meta = inputs, dict(sample.metainfo)
        else:
            scaled, meta = rescale_input(
                inputs, sample.metainfo, factor,
                getattr(pre, 'pad_size_divisor', 1),
                getattr(pre, 'pad_value', 0))
        fast = self.base.uses_fast_path(adapter)
        state = adapter.forward(scaled, [DetDataSample(metainfo=meta)],
                                keep_graph=not fast)
        return state, meta

    def _explain_image(self, model, adapter, inputs: Tensor,
                       sample: DetDataSample, targets: tuple,
                       slots: List[int], score_thr: float) -> DetDataSample:
        base = self.base
        if base.method == 'fast' and not adapter.has_fast_path():
            raise ValueError(f"method='fast' is not available for "
                             f'{type(model).__name__}')
        ref_state, ref_meta = self._forward(model, adapter, inputs, sample,
                                            1.0)
        ref = ref_state.results[0]
        keep = (ref.scores >= score_thr).nonzero()[:, 0]
        ref = ref[keep]
        runs = []  # (state, meta, matched candidate per kept detection)
        for factor in self.scales:
            if factor == 1.0:
                state, meta, match = ref_state, ref_meta, keep
            else:
                state, meta = self._forward(model, adapter, inputs, sample,
                                            factor)
                res = state.results[0]
                match = best_iou_match(ref.bboxes, ref.labels, res.bboxes,
                                       res.labels)
            runs.append((state, meta, match))
        big_state, big_meta, _ = runs[max(range(len(runs)),
                                          key=lambda i: self.scales[i])]
        big_shape = big_meta['img_shape']
        grids = [(big_shape, stride, tuple(feat.shape[-2:]))
                 for stride, feat in zip(big_state.strides,
                                         big_state.activations)]
        acts = self._fused_activations(runs, grids)
        ori_h, ori_w = (int(v) for v in ref_meta['ori_shape'][:2])
        maps = ref.bboxes.new_zeros((len(ref), len(slots), ori_h, ori_w))
        attr_ids = [a for a in slots if a >= 0]
        slot_of = {a: k for k, a in enumerate(slots) if a >= 0}
        slot_index = torch.tensor([slot_of[a] for a in attr_ids],
                                  dtype=torch.long)
        chunk = base.chunk_size
        for start in range(0, len(ref), chunk):
            rows = list(range(start, min(start + chunk, len(ref))))
            grads = self._fused_gradients(adapter, runs, rows, attr_ids,
                                          grids, acts)
            box_sizes = (ref.bboxes[rows, 2:] - ref.bboxes[rows, :2]) \
                .clamp(min=0) * ref.bboxes.new_tensor(
                    big_meta.get('scale_factor', (1., 1.))[:2])
            seen = torch.zeros((len(rows), len(attr_ids)), dtype=torch.bool)
            for level, level_grads in sorted(grads.items()):
                stride = big_state.strides[level]
                flat = level_grads.flatten(0, 1)  # (rows * attrs, C, h, w)
                # only the maps this level reaches (as the base groups them;
                # the adaptive kernel's radius depends on the group)
                hit = flat.flatten(1).ne(0).any(dim=1).nonzero()[:, 0]
                row_k = hit // len(attr_ids)
                col_k = hit % len(attr_ids)
                sigmas = base._sigmas(box_sizes[row_k], box_sizes.new_full(
                    (len(hit), ), float(stride)))
                level_maps = self._form_maps(
                    flat[hit], acts[level], sigmas,
                    valid_cells(big_shape, stride, acts[level].shape[-2:]))
                level_maps = feature_to_image(level_maps, stride, big_shape,
                                              ref_meta['ori_shape'],
                                              base.cell_position)
                dst_rows = row_k + start
                dst_cols = slot_index[col_k]
                first = ~seen[row_k, col_k]
                if base.level_fusion == 'max':
                    level_maps = torch.where(
                        first[:, None, None], level_maps, torch.maximum(
                            maps[dst_rows, dst_cols], level_maps))
                else:
                    level_maps = maps[dst_rows, dst_cols] + level_maps
                maps[dst_rows, dst_cols] = level_maps
                seen[row_k, col_k] = True
        return base._pack(sample, ref, maps, targets, slots)

    def _form_maps(self, grads: Tensor, activations: Tensor, sigmas,
                   valid: Tuple[int, int]) -> Tensor:
        """The base's map from fused (N, C, h, w) gradients / (C, h, w)
        activations, on the feature grid (N, h, w); ``valid`` is the
        unpadded (rows, cols) part."""
        if hasattr(self.base, 'feature_maps'):  # Grad-CAM++ weighting
            return self.base.feature_maps(grads, activations, sigmas, valid)
        return odam_map(grads, activations, self.base.smooth, sigmas,
                        self.base.grad_mode)

    @staticmethod
    def _fused_activations(runs: list, grids: List[tuple]) -> List[Tensor]:
        """Per level: mean over scales of the activations on the largest
        scale's grid (:func:`to_common_grid`), (C, H, W)."""
        fused = []
        for level, grid in enumerate(grids):
            total = None
            for state, meta, _ in runs:
                feat = state.activations[level].detach()[0]
                part = to_common_grid(feat, meta['img_shape'],
                                      state.strides[level], *grid)
                total = part if total is None else total + part
            fused.append(total / len(runs))
        return fused

    def _fused_gradients(self, adapter, runs: list, rows: List[int],
                         attr_ids: List[int], grids: List[tuple],
                         acts: List[Tensor]) -> Dict[int, Tensor]:
        """Per level reached at any scale: the mean over scales of the
        gradients of each row's candidate, (len(rows), len(attr_ids), C, h,
        w) on the largest scale's grid."""
        num_attrs = len(ATTRIBUTES)
        col_of = {a: k for k, a in enumerate(attr_ids)}
        fused: Dict[int, Tensor] = {}
        for state, meta, match in runs:
            cands = match[rows]
            wanted = sorted(set(int(c) for c in cands.tolist() if c >= 0))
            if not wanted:
                continue
            pieces = self.base._gradients(adapter, state, 0, wanted,
                                          list(attr_ids))
            for piece in pieces:
                feat = state.activations[piece.level]
                full = tuple(piece.grads.shape[-2:]) == \
                    tuple(feat.shape[-2:]) and not bool(piece.offsets.any())
                grads = piece.grads if full else paste_windows_nchw(
                    piece.grads, piece.offsets, feat.shape[-2:])
                grads = to_common_grid(grads, meta['img_shape'],
                                       state.strides[piece.level],
                                       *grids[piece.level])
                if piece.level not in fused:
                    fused[piece.level] = grads.new_zeros(
                        (len(rows), len(attr_ids)) +
                        tuple(acts[piece.level].shape))
                dets = (piece.pair_index // num_attrs).tolist()
                attrs = (piece.pair_index % num_attrs).tolist()
                for k, (det, attr) in enumerate(zip(dets, attrs)):
                    for r in (cands == det).nonzero()[:, 0].tolist():
                        fused[piece.level][r, col_of[attr]] += grads[k]
        for level in fused:
            fused[level] /= len(runs)
        return fused


__all__ = ['CAMERAS', 'rescale_input', 'resize_grid', 'valid_cells',
           'to_common_grid',
           'best_iou_match']
