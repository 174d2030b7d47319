"""The ODAM explainer (Sec. 3.1, Eq. 1-2)."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from torch import Tensor

from ..registry import EXPLAINERS
from ..structures import HeatMaps, MapWindows
from .adapters import ATTRIBUTES, ForwardState, LevelGradients, build_adapter
from .candidates import (as_selectors, final_detections,
                         reference_correlations)
from .heatmap import (GRAD_MODES, box_windows, check_cell_position,
                      gaussian_smooth, kernel_radius, odam_map,
                      smoothing_sigmas, support_box,
                      weighted_activation_map)

TARGETS = ATTRIBUTES + ('combined', )
# whole-map gradients turned into maps per batch (bounds temporaries)
FULL_MAP_BATCH = 16


def crop_windows(feat: Tensor, image_index: Union[int, Tensor],
                 offsets: Tensor, size: Sequence[int]) -> Tensor:
    """Windows of a feature map, zero outside it.

    Args:
        feat (Tensor): (B, C, H, W).
        image_index (int | Tensor): Image to cut from, one for all windows or
            one per window (M, ).
        offsets (Tensor): (y0, x0) per window, (M, 2); may lie outside the map.
        size (tuple): (h, w) of every window.

    Returns:
        Tensor: (M, C, h, w).
    """
    h, w = size
    pad = int(max(h, w))
    rows = offsets[:, 0:1] + pad + torch.arange(h, device=feat.device)[None]
    cols = offsets[:, 1:2] + pad + torch.arange(w, device=feat.device)[None]
    if isinstance(image_index, Tensor):
        padded = F.pad(feat, (pad, pad, pad, pad))
        return padded[image_index[:, None, None], :, rows[:, :, None],
                      cols[:, None, :]].permute(0, 3, 1, 2)
    padded = F.pad(feat[image_index], (pad, pad, pad, pad))
    return padded[:, rows[:, :, None], cols[:, None, :]].permute(1, 0, 2, 3)


def paste_windows(maps: Tensor, offsets: Tensor,
                  canvas_size: Sequence[int]) -> Tensor:
    """Paste window maps (M, h, w) at offsets onto (M, H, W) zero canvases."""
    h, w = maps.shape[-2:]
    big_h, big_w = canvas_size
    pad = int(max(h, w))
    canvas = maps.new_zeros((maps.shape[0], big_h + 2 * pad, big_w + 2 * pad))
    rows = offsets[:, 0:1] + pad + torch.arange(h, device=maps.device)[None]
    cols = offsets[:, 1:2] + pad + torch.arange(w, device=maps.device)[None]
    index = torch.arange(maps.shape[0], device=maps.device)[:, None, None]
    canvas[index, rows[:, :, None], cols[:, None, :]] = maps
    return canvas[:, pad:pad + big_h, pad:pad + big_w]


def window_odam_maps(grads: Tensor, offsets: Tensor, feat: Tensor,
                     image_index: Union[int, Tensor], sigmas: Optional[Tensor],
                     grad_mode: str) -> tuple:
    """ODAM maps of gradient windows on their own windows of a feature map.

    Each window is padded by the Gaussian's radius first, so that smoothing
    spreads the gradient beyond the receptive field as on the full map.

    Args:
        grads (Tensor): Gradient windows (M, C, h, w).
        offsets (Tensor): (y0, x0) of each window on the level grid, (M, 2).
        feat (Tensor): The level's activations (B, C, H, W).
        image_index (int | Tensor): Image of all windows, or of each (M, ).
        sigmas (Tensor | None): Per-window Gaussian sigma in cells (Phi of an
            ``'adaptive'`` or fixed smoothing); None for ``smooth='none'``.
        grad_mode (str): See ``weighted_activation_map``.

    Returns:
        tuple[Tensor, Tensor]: Maps (M, h + 2r, w + 2r) and their offsets.
    """
    margin = kernel_radius(sigmas) if sigmas is not None else 0
    weights = gaussian_smooth(grads, sigmas, pad=margin) \
        if sigmas is not None else grads
    offsets = offsets - margin
    # the attributes of one detection share a window: crop each window once
    image_col = image_index if isinstance(image_index, Tensor) else \
        offsets.new_full((len(offsets), ), image_index)
    keys, inverse = torch.unique(
        torch.cat([image_col[:, None], offsets], dim=1), dim=0,
        return_inverse=True)
    if len(keys) == len(offsets):  # no shared windows: crop in order
        acts = crop_windows(feat, image_col, offsets, weights.shape[-2:])
    else:
        acts = crop_windows(feat, keys[:, 0], keys[:, 1:],
                            weights.shape[-2:]).index_select(0, inverse)
    maps = weighted_activation_map(weights, acts, grad_mode)
    return maps, offsets


@EXPLAINERS.register_module()
class ODAM:
    """Object Detector Activation Maps.

    For each final detection and attribute Y (class score, box extents), the
    heat map is ``f(sum_k Phi(dY/dA_k) * A_k)`` on the chosen feature map A,
    resampled to the original image and scaled to [0, 1] per map.

    Args:
        feature (str): Explained feature map: ``'neck'`` (FPN outputs; default),
            ``'backbone'`` (all backbone stages, combined by ``level_fusion``),
            ``'roi'`` (RoI features, two-stage detectors), ``'encoder'``
            (DETR's transformer encoder output, on the neck's grid).
        grad_mode (str): ``'pos_relu'`` (default), ``'neg_relu'``, ``'pos'``,
            ``'abs'`` (App. A.5.6; see ``heatmap.weighted_activation_map``).
        smooth (str | float): Phi: ``'adaptive'`` Gaussian sized to the object
            (default), a fixed sigma in feature cells, ``'none'``, or
            ``'global'`` (global average pooling: Grad-CAM's weights).
        sigma_scale (float): For ``'adaptive'``, sigma = sigma_scale *
            sqrt(box w * h) / stride, at least ``min_sigma`` cells.
        min_sigma (float): Lower bound of the adaptive sigma.
        level_fusion (str): ``'sum'`` or ``'max'`` of per-level image maps
            when gradients reach several levels (backbone features). Dense and
            R-CNN predictions on neck features only reach their own level.
        method (str): ``'auto'`` (batched receptive-field path where the family
            has one, else exact), ``'fast'`` (the same, error if unavailable)
            or ``'exact'`` (one autograd call per detection and attribute).
        score_target (str): ``'score'`` (the detector's final confidence) or
            ``'logit'`` (raw class logit).
        chunk_size (int): Detections per chunk, bounding memory.
        cell_position (str): Where a feature cell lies in the image when maps
            are resampled to pixels: ``'grid'`` (default: the centre of its
            s x s block, a plain resize as in the paper) or
            ``'receptive_field'`` (cell (i, j) of stride s on pixel
            (i * s, j * s), the geometric centre of its receptive field in
            conv nets). See ``heatmap.upsample_cells``.
    """

    def __init__(self, feature: str = 'neck', grad_mode: str = 'pos_relu',
                 smooth: Union[str, float] = 'adaptive',
                 sigma_scale: float = 0.1, min_sigma: float = 0.5,
                 level_fusion: str = 'sum', method: str = 'auto',
                 score_target: str = 'score', chunk_size: int = 64,
                 cell_position: str = 'grid') -> None:
        if grad_mode not in GRAD_MODES:
            raise ValueError(f'grad_mode must be one of {GRAD_MODES}, got '
                             f'{grad_mode!r}')
        if not (smooth in ('adaptive', 'none', 'global') or
                (isinstance(smooth, (int, float)) and smooth >= 0)):
            raise ValueError(f"smooth must be 'adaptive', 'none', 'global' or "
                             f'a sigma >= 0, got {smooth!r}')
        if level_fusion not in ('sum', 'max'):
            raise ValueError(f"level_fusion must be 'sum' or 'max', got "
                             f'{level_fusion!r}')
        if method not in ('auto', 'fast', 'exact'):
            raise ValueError(f"method must be 'auto', 'fast' or 'exact', got "
                             f'{method!r}')
        self.feature = feature
        self.grad_mode = grad_mode
        self.smooth = smooth
        self.sigma_scale = sigma_scale
        self.min_sigma = min_sigma
        self.level_fusion = level_fusion
        self.method = method
        self.score_target = score_target
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) \
                or chunk_size < 1:
            raise ValueError(f'chunk_size must be an integer >= 1, got '
                             f'{chunk_size!r}')
        self.chunk_size = chunk_size
        self.cell_position = check_cell_position(cell_position)

    # ---------------------------------------------------------------------
    def explain_batch(self, model, inputs: Tensor,
                      data_samples: List[DetDataSample],
                      targets: Sequence[str] = TARGETS,
                      score_thr: float = 0.3,
                      candidates=None) -> List[DetDataSample]:
        """Explain every detection of a preprocessed batch (or the
        candidates a selector picks).

        Args:
            model: MMDetection detector (eval mode).
            inputs (Tensor): Preprocessed images (B, 3, H, W).
            data_samples (list[DetDataSample]): With image metainfo.
            targets (Sequence[str]): Subset of ``TARGETS`` in output order.
            score_thr (float): Detections scoring below it are dropped (and
                not referred to by selectors).
            candidates (CandidateSelector | list, optional): What to explain
                instead of the final detections, one selector for all images
                or one per image (:mod:`~mmdet_odam.explainers.candidates`).

        Returns:
            list[DetDataSample]: ``pred_instances`` with ``bboxes``,
            ``scores``, ``labels``, the candidate identity fields
            (``cand_*``), ``ref_index``/``ref_iou`` (what each row refers to;
            ``ref_correlation`` (N, T) with the referred detection's maps)
            and ``heatmaps`` (a :class:`~mmdet_odam.structures.HeatMaps` of
            N x T maps on the original image, in [0, 1]);
            ``metainfo['targets']`` names the T maps.
        """
        targets = tuple(targets)
        unknown = [t for t in targets if t not in TARGETS]
        if unknown or not targets:
            raise ValueError(f'unknown targets {unknown}; choose from '
                             f'{TARGETS}')
        # one output slot per requested target; attributes that only feed
        # 'combined' get hidden slots after them
        slots = [ATTRIBUTES.index(t) if t != 'combined' else -1
                 for t in targets]
        if 'combined' in targets:
            slots += [a for a in range(len(ATTRIBUTES)) if a not in slots]
        adapter = build_adapter(model, self.feature, self.score_target)
        selectors = as_selectors(candidates, len(data_samples))
        for selector in selectors:
            selector.check(adapter)
        metas = [ds.metainfo for ds in data_samples]
        with torch.enable_grad():
            fast = self.uses_fast_path(adapter)
            if self.method == 'fast' and not fast:
                raise ValueError(
                    f"method='fast' is not available for "
                    f'{type(model).__name__} with feature {self.feature!r}; '
                    "use method='exact' or 'auto'")
            state = adapter.forward(inputs, data_samples, keep_graph=not fast)
            outputs = []
            for img_idx, sample in enumerate(data_samples):
                detections = final_detections(state, img_idx, score_thr)
                rows = selectors[img_idx].select(adapter, state, img_idx,
                                                 score_thr)
                adapter.set_candidates(state, img_idx, rows)
                maps = self._image_maps(
                    adapter, state, img_idx,
                    torch.arange(len(rows), device=rows.labels.device),
                    slots, metas[img_idx], targets)
                if selectors[img_idx].refers_to_detections and len(rows):
                    rows.ref_correlation = self._reference_correlations(
                        adapter, state, img_idx, rows, maps, detections,
                        slots, metas[img_idx], targets)
                outputs.append(self._pack(sample, rows, maps, targets,
                                          slots))
        return outputs

    def _reference_correlations(self, adapter, state: ForwardState,
                                img_idx: int, rows, maps: HeatMaps,
                                detections, slots: List[int],
                                meta: dict, targets: Sequence[str]) -> Tensor:
        """(N, T) correlation of each row's maps with those of the final
        detection it refers to (``ref_index``), which are computed here."""
        refs, ref_rows = rows.ref_index.unique(return_inverse=True)
        adapter.set_candidates(state, img_idx, detections[refs])
        ref_maps = self._image_maps(adapter, state, img_idx,
                                    torch.arange(len(refs)), slots, meta,
                                    targets)
        return reference_correlations(maps, ref_maps, ref_rows)

    # ---------------------------------------------------------------------
    #: ``method='auto'`` may take a fast path that only approximates the
    #: gradients (frozen GroupNorm statistics; local maps barely change).
    #: Methods whose weights pool the gradient over the whole map set False.
    auto_allows_approximate_gradients = True

    def uses_fast_path(self, adapter) -> bool:
        """Whether gradients come from the adapter's batched fast path."""
        if self.method == 'exact' or not adapter.has_fast_path():
            return False
        return self.method == 'fast' or adapter.fast_path_is_exact() or \
            self.auto_allows_approximate_gradients

    def _gradients(self, adapter, state: ForwardState, img_idx: int,
                   det_ids: List[int], attr_ids: List[int]
                   ) -> List[LevelGradients]:
        if self.uses_fast_path(adapter):
            return adapter.fast_gradients(state, img_idx, det_ids, attr_ids)
        return adapter.exact_gradients(state, img_idx, det_ids, attr_ids)

    def _image_maps(self, adapter, state: ForwardState, img_idx: int,
                    det_ids: Tensor, slots: List[int], meta: dict,
                    targets: Sequence[str]) -> HeatMaps:
        """Maps of detections ``det_ids`` for the attributes of ``slots``
        (``-1``: 'combined', computed by :class:`HeatMaps`), kept as windows
        on their feature grids."""
        res = state.results[img_idx]
        num_attrs = len(ATTRIBUTES)
        attr_ids = [a for a in slots if a >= 0]
        stored = len(attr_ids)
        slot_of = torch.full((num_attrs, ), -1, dtype=torch.long,
                             device=res.labels.device)
        for k, attr in enumerate(attr_ids):
            slot_of[attr] = k
        scale = res.bboxes.new_tensor(meta.get('scale_factor', (1., 1.)))
        input_sizes = (res.bboxes[:, 2:] - res.bboxes[:, :2]).clamp(min=0) * \
            scale
        row_of = torch.full((len(res), ), -1, dtype=torch.long,
                            device=res.labels.device)
        row_of[det_ids] = torch.arange(len(det_ids), device=row_of.device)
        windows = []
        for start in range(0, len(det_ids), self.chunk_size):
            chunk = det_ids[start:start + self.chunk_size].tolist()
            for piece in self._gradients(adapter, state, img_idx, chunk,
                                         attr_ids):
                dets = piece.pair_index // num_attrs
                rows = row_of[dets] * stored + \
                    slot_of[piece.pair_index % num_attrs]
                windows += self._level_windows(piece, state, img_idx,
                                               input_sizes[dets], rows, meta)
        return HeatMaps(
            len(det_ids), targets, [ATTRIBUTES[a] for a in attr_ids],
            meta['img_shape'][:2], meta['ori_shape'][:2], windows,
            fusion=self.level_fusion, signed=self.grad_mode == 'pos',
            device=res.bboxes.device)

    def _level_windows(self, piece: LevelGradients, state: ForwardState,
                       img_idx: int, box_sizes: Tensor, rows: Tensor,
                       meta: dict) -> List[MapWindows]:
        """Maps of one gradient piece, as windows of :class:`HeatMaps`.

        Args:
            piece (LevelGradients): M gradient windows.
            box_sizes (Tensor): (w, h) in input pixels of each window's
                detection, (M, 2).
            rows (Tensor): Stored map of each window, (M, ).
            meta (dict): The image's metainfo.
        """
        if piece.roi_boxes is not None:  # RoI grid: stride of one RoI cell
            cells = piece.grads.shape[-1]
            strides = ((piece.roi_boxes[:, 2:] - piece.roi_boxes[:, :2])
                       .clamp(min=1).mean(dim=1) / cells)
            sigmas = self._sigmas(box_sizes, strides)
            maps = odam_map(piece.grads, piece.activations, self.smooth,
                            sigmas, self.grad_mode)
            return roi_map_windows(maps, piece.roi_boxes, rows,
                                   meta['img_shape'])
        stride = state.strides[piece.level]
        sigmas = self._sigmas(box_sizes, box_sizes.new_full(
            (len(box_sizes), ), float(stride)))
        feat = state.activations[piece.level].detach()
        full = piece.grads.shape[-2:] == feat.shape[-2:] and \
            not bool(piece.offsets.any())
        if full or self.smooth == 'global':
            # whole-map gradients (transformers, Grad-CAM): a few at a time,
            # so that smoothing's temporaries stay small
            out = []
            for start in range(0, len(rows), FULL_MAP_BATCH):
                part = slice(start, start + FULL_MAP_BATCH)
                grads = piece.grads[part] if full else paste_windows_nchw(
                    piece.grads[part], piece.offsets[part], feat.shape[-2:])
                maps, offsets = crop_to_support(odam_map(
                    grads, feat[img_idx], self.smooth,
                    None if sigmas is None else sigmas[part],
                    self.grad_mode))
                out.append(MapWindows(rows[part], maps, offsets, 'cells',
                                      int(stride), self.cell_position))
            return out
        maps, offsets = window_odam_maps(
            piece.grads, piece.offsets, feat, img_idx, sigmas,
            self.grad_mode)
        return [MapWindows(rows, maps, offsets, 'cells', int(stride),
                           self.cell_position)]

    def _sigmas(self, box_sizes: Tensor, strides: Tensor) -> Optional[Tensor]:
        return smoothing_sigmas(self.smooth, box_sizes, strides,
                                self.sigma_scale, self.min_sigma)

    def _pack(self, sample: DetDataSample, results,
              maps: Union[HeatMaps, Tensor], targets: Sequence[str],
              slots: List[int]) -> DetDataSample:
        """The output sample: ``results``' boxes and the maps of ``targets``.

        ``maps`` is a :class:`HeatMaps` of the attributes of ``slots``, or
        raw dense maps (N, len(slots), H_ori, W_ori) in slot order (the slot
        of 'combined', -1, is ignored).
        """
        if isinstance(maps, Tensor):
            keep = [k for k, a in enumerate(slots) if a >= 0]
            meta = sample.metainfo
            maps = HeatMaps.from_dense(
                maps[:, keep], targets,
                slots=[ATTRIBUTES[slots[k]] for k in keep],
                img_shape=meta.get('img_shape', maps.shape[-2:])[:2],
                signed=self.grad_mode == 'pos')
        out = DetDataSample(metainfo=sample.metainfo)
        out.set_metainfo(dict(targets=tuple(targets)))
        pred = results.new()
        pred.bboxes = results.bboxes
        pred.scores = results.scores
        pred.labels = results.labels
        for name in ('ref_index', 'ref_iou', 'ref_correlation', *sorted(
                k for k in results.keys() if k.startswith('cand_'))):
            if name in results:
                pred.set_field(results.get(name), name)
        pred.heatmaps = maps
        out.pred_instances = pred
        return out


def crop_to_support(maps: Tensor) -> Tuple[Tensor, Tensor]:
    """Maps (M, H, W) cropped to the bounding box of all their non-zero
    cells, and that box's top-left cell (M, 2) (the same for all)."""
    box = support_box(maps.ne(0).any(dim=0))
    if box is None:
        return maps[:, :1, :1], maps.new_zeros((len(maps), 2),
                                               dtype=torch.long)
    y0, x0, y1, x1 = box
    corner = torch.tensor([y0, x0], device=maps.device)
    return maps[:, y0:y1, x0:x1], corner.expand(len(maps), 2)


def roi_map_windows(maps: Tensor, roi_boxes: Tensor, rows: Tensor,
                    img_shape: Sequence[int]) -> List[MapWindows]:
    """RoI-grid maps (M, h, w) resized into their boxes (rounded, clipped to
    the input, :func:`~.heatmap.box_windows`), one window each (boxes
    differ in size)."""
    return [MapWindows(rows[n:n + 1], window[None],
                       rows.new_tensor([corner]), 'pixels')
            for n, window, corner in box_windows(
                maps, roi_boxes, tuple(img_shape[:2]))]


def paste_windows_nchw(grads: Tensor, offsets: Tensor,
                       size: Sequence[int]) -> Tensor:
    """Paste (M, C, h, w) gradient windows onto (M, C, H, W) zero maps."""
    m, c, h, w = grads.shape
    flat = paste_windows(grads.reshape(m * c, h, w),
                         offsets.repeat_interleave(c, dim=0), size)
    return flat.reshape(m, c, *size)
