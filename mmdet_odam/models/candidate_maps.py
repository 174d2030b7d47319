"""Batched ODAM score maps of many candidates on one common grid.

Odam-Train compares the maps of all positive proposals and Odam-NMS those of all
pre-NMS candidates, so both need, for hundreds of candidates at once, the ODAM
map of the candidate's confidence resampled to one small grid of the input
image (paper: short edge ~50). The gradient dY/dA is computed in one batched
backward (dense heads: receptive-field patches; R-CNN: RoI features, which are
independent per RoI) and treated as a constant; the activations A may stay in
the autograd graph so that a loss on the maps reaches the features.
"""
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

from ..explainers.adapters import ForwardState
from ..explainers.adapters.dense import head_adapter
from ..explainers.heatmap import (cell_shift, check_cell_position, odam_map,
                                  smoothing_sigmas)
from ..explainers.odam import window_odam_maps


def common_grid_size(img_shape: Sequence[int],
                     short_edge: int) -> Tuple[int, int]:
    """(h, w) of a grid with the image's aspect ratio and the given short edge.

    Args:
        img_shape (tuple): (h, w) of the network input (unpadded).
        short_edge (int): Cells along the shorter side.

    Returns:
        tuple[int, int]: Grid size, each side at least 1.
    """
    height, width = float(img_shape[0]), float(img_shape[1])
    scale = short_edge / max(min(height, width), 1.0)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resample_to_grid(maps: Tensor, regions: Tensor, img_shape: Sequence[int],
                     grid_size: Sequence[int]) -> Tensor:
    """Resample maps that each cover an input-pixel region onto one grid.

    A map of shape (h, w) covering ``region`` = (x1, y1, x2, y2) is sampled
    bilinearly at the centres of a ``grid_size`` grid over the input image
    ``[0, w_img) x [0, h_img)``; outside its region a map is zero. This serves
    feature-grid windows (region = the window's cells times the stride) and
    RoI-grid maps (region = the RoI box: an "inverse RoIAlign") alike, and is
    differentiable w.r.t. ``maps``.

    Args:
        maps (Tensor): (M, h, w).
        regions (Tensor): (M, 4) input-pixel boxes the maps span.
        img_shape (tuple): (h_img, w_img) of the unpadded input.
        grid_size (tuple): (H, W) of the output grid.

    Returns:
        Tensor: (M, H, W).
    """
    out_h, out_w = int(grid_size[0]), int(grid_size[1])
    if maps.shape[0] == 0:
        return maps.new_zeros((0, out_h, out_w))
    dtype, device = maps.dtype, maps.device
    ys = (torch.arange(out_h, device=device, dtype=dtype) + 0.5) * (
        float(img_shape[0]) / out_h)
    xs = (torch.arange(out_w, device=device, dtype=dtype) + 0.5) * (
        float(img_shape[1]) / out_w)
    regions = regions.to(dtype)
    spans = (regions[:, 2:] - regions[:, :2]).clamp(min=1e-6)
    # align_corners=False: -1 / +1 are the outer edges of the first/last cell
    gx = 2 * (xs[None] - regions[:, 0:1]) / spans[:, 0:1] - 1  # (M, W)
    gy = 2 * (ys[None] - regions[:, 1:2]) / spans[:, 1:2] - 1  # (M, H)
    grid = torch.stack([gx[:, None, :].expand(-1, out_h, -1),
                        gy[:, :, None].expand(-1, -1, out_w)], dim=-1)
    return F.grid_sample(maps[:, None], grid, mode='bilinear',
                         padding_mode='zeros', align_corners=False)[:, 0]


class CandidateMapper:
    """ODAM maps of a candidate's confidence for many candidates at once.

    Args:
        grid_short_edge (int): Short edge of the common grid (paper: 50).
        score_target (str): ``'logit'`` (class logit: used by the authors for
            Odam-Train/NMS; no sigmoid saturation) or ``'score'`` (the
            detector's final confidence).
        smooth (str | float): Phi, as :class:`~mmdet_odam.explainers.ODAM`
            (``'adaptive'``, ``'none'`` or a sigma in cells).
        sigma_scale (float): Adaptive sigma as a fraction of the object size.
        min_sigma (float): Lower bound of the adaptive sigma, in cells.
        grad_mode (str): Sign convention, see ``weighted_activation_map``.
        cell_position (str): Where feature cells lie in the image
            (``'grid'`` or ``'receptive_field'``, see
            ``heatmap.upsample_cells``).
    """

    def __init__(self, grid_short_edge: int = 50, score_target: str = 'logit',
                 smooth: Union[str, float] = 'adaptive',
                 sigma_scale: float = 0.1, min_sigma: float = 0.5,
                 grad_mode: str = 'pos_relu',
                 cell_position: str = 'grid') -> None:
        if smooth == 'global':
            raise ValueError("smooth='global' makes maps class-specific; use "
                             "'adaptive', 'none' or a sigma")
        self.grid_short_edge = int(grid_short_edge)
        self.score_target = score_target
        self.smooth = smooth
        self.sigma_scale = sigma_scale
        self.min_sigma = min_sigma
        self.grad_mode = grad_mode
        self.cell_position = check_cell_position(cell_position)

    def grid_size(self, img_shape: Sequence[int]) -> Tuple[int, int]:
        return common_grid_size(img_shape, self.grid_short_edge)

    # -- dense heads ------------------------------------------------------------
    def dense(self, head, feats: Sequence[Tensor], norm_stats: dict,
              candidates: List[InstanceData], img_shapes: Sequence[Sequence],
              create_graph: bool = False) -> List[Tensor]:
        """Maps of dense-head candidates, one tensor per image.

        Args:
            head: The dense head (conv-only; see ``can_use_patches``).
            feats (Sequence[Tensor]): Neck outputs, each (B, C, H_l, W_l). Kept
                in the graph when they require grad.
            norm_stats (dict): GroupNorm statistics recorded during the head's
                full-map forward (``record_norm_stats``).
            candidates (list[InstanceData]): Per image: ``cand_level``,
                ``cand_index`` (flat index on that level, anchors innermost),
                ``labels`` and ``bboxes`` (input pixels, for sigma).
            img_shapes (Sequence): (h, w) of each unpadded input.
            create_graph (bool): Keep the graph of dY/dA (second order: the
                maps then also depend on the head's parameters).

        Returns:
            list[Tensor]: (N_i, H, W) maps per image, in candidate order.
        """
        adapter = head_adapter(head, self.score_target)
        if not adapter.has_fast_path():
            raise TypeError(
                f'{type(head).__name__} is not a conv-only dense head with '
                'frozen norms; batched candidate maps are unavailable for it')
        featmap_sizes = [f.shape[-2:] for f in feats]
        priors = adapter.grid_priors(featmap_sizes, dtype=feats[0].dtype,
                                     device=feats[0].device)
        strides = [head.prior_generator.strides[i][0]
                   for i in range(len(feats))]
        # all images' candidates in one patch batch (one backward)
        counts = [len(c) for c in candidates]
        merged = InstanceData(
            cand_level=torch.cat([c.cand_level for c in candidates]),
            cand_index=torch.cat([c.cand_index for c in candidates]),
            labels=torch.cat([c.labels for c in candidates]),
            bboxes=torch.cat([c.bboxes for c in candidates]),
            img_index=torch.cat([
                torch.full_like(c.labels, i)
                for i, c in enumerate(candidates)]))
        state = ForwardState(
            results=[merged], activations=[f.detach() for f in feats],
            strides=strides,
            extras=dict(priors=priors, norm_stats=norm_stats,
                        featmap_sizes=featmap_sizes))
        grids = [self.grid_size(shape) for shape in img_shapes]
        # float32 even under autocast: maps are compared by cosine
        out = [feats[0].new_zeros((n, ) + grid, dtype=torch.float32)
               for n, grid in zip(counts, grids)]
        if sum(counts) == 0:
            return out
        starts = torch.tensor([0] + counts).cumsum(0).tolist()
        pieces = adapter.fast_gradients(state, 0, list(range(sum(counts))),
                                        [0], create_graph=create_graph)
        for piece in pieces:
            dets = piece.pair_index // 5  # one attribute per candidate
            stride = float(strides[piece.level])
            boxes = merged.bboxes[dets]
            sigmas = smoothing_sigmas(
                self.smooth, boxes[:, 2:] - boxes[:, :2],
                boxes.new_full((len(dets), ), stride), self.sigma_scale,
                self.min_sigma)
            images = merged.img_index[dets]
            window_maps, offsets = window_odam_maps(
                piece.grads, piece.offsets, feats[piece.level], images, sigmas,
                self.grad_mode)
            top_left = offsets.flip(1).to(window_maps.dtype) * stride + \
                cell_shift(stride, self.cell_position)
            size = window_maps.new_tensor(window_maps.shape[-1:-3:-1]) * stride
            regions = torch.cat([top_left, top_left + size], dim=1)
            for img in images.unique().tolist():
                sel = (images == img).nonzero()[:, 0]
                out[img] = out[img].index_put(
                    (dets[sel] - starts[img], ),
                    resample_to_grid(window_maps[sel], regions[sel],
                                     img_shapes[img], grids[img]).float())
        return out

    # -- R-CNN --------------------------------------------------------------------
    def roi(self, bbox_head, roi_feats: Tensor, rois: Tensor, labels: Tensor,
            img_shapes: Sequence[Sequence],
            create_graph: bool = False) -> List[Tensor]:
        """Maps of R-CNN candidates explained at their RoI features.

        RoIs are independent once pooled, so one backward of the summed
        scores gives every RoI's gradient exactly. Each (7x7) map is pasted
        into its RoI box on the common grid.

        Args:
            bbox_head: The R-CNN box head (``cls_score`` from RoI features).
            roi_feats (Tensor): Pooled features (M, C, h, w), possibly in the
                graph.
            rois (Tensor): (M, 5) as ``bbox2roi`` (image index, box in input
                pixels).
            labels (Tensor): Class explained for each RoI, (M, ).
            img_shapes (Sequence): (h, w) of each unpadded input.
            create_graph (bool): Keep the graph of dY/dA.

        Returns:
            list[Tensor]: (N_i, H, W) maps per image, in RoI order.
        """
        leaf = roi_feats if create_graph else roi_feats.detach()
        leaf = leaf.requires_grad_() if not leaf.requires_grad else leaf
        cls_score = bbox_head(leaf)[0]
        rows = torch.arange(len(labels), device=labels.device)
        score = cls_score.softmax(-1)[rows, labels] if \
            self.score_target == 'score' else cls_score[rows, labels]
        if len(labels):
            grads, = torch.autograd.grad(score.sum(), leaf,
                                         create_graph=create_graph)
        else:
            grads = torch.zeros_like(leaf)
        boxes = rois[:, 1:]
        cells = roi_feats.shape[-1]
        # the RoI spans the whole grid: object size = cells, stride = 1
        sigmas = smoothing_sigmas(
            self.smooth, boxes.new_full((len(rois), 2), cells),
            boxes.new_ones(len(rois)), self.sigma_scale, self.min_sigma)
        maps = odam_map(grads, roi_feats,
                        self.smooth if sigmas is not None else 'none', sigmas,
                        self.grad_mode)
        out = []
        for img_idx, img_shape in enumerate(img_shapes):
            sel = (rois[:, 0] == img_idx).nonzero()[:, 0]
            out.append(resample_to_grid(maps[sel], boxes[sel], img_shape,
                                        self.grid_size(img_shape)))
        return out
