"""Grad-CAM and Grad-CAM++ for detections, built on ODAM's machinery.

Both explain a detection's confidence (``score`` target, as in the paper's
comparison) with the same adapters, exact candidates and feature maps as ODAM;
only the weighting of the gradient differs:

* Grad-CAM (Selvaraju et al.): one weight per channel, the global average of
  dY/dA_k over the explained feature map:
  ``H = ReLU(sum_k mean(dY/dA_k) A_k)``.
  This is ODAM with ``smooth='global'`` (the paper's "Phi = global average
  pooling" limit), so :class:`GradCAM` is exactly that configuration.
* Grad-CAM++ (Chattopadhyay et al.): ``w_k = sum_ij alpha_ij^k ReLU(g_ij^k)``
  with ``g = dS/dA`` and

      alpha_ij^k = g_ij^2 / (2 g_ij^2 + sum_ab A_ab^k g_ij^3),

  the closed form for an exponential output ``Y = exp(S)``: its 2nd and 3rd
  derivatives are ``exp(S) g^2`` and ``exp(S) g^3`` when S is piecewise linear
  in A (ReLU networks), and the common ``exp(S)`` factors cancel in alpha and
  only scale ``w`` (irrelevant after the per-map normalisation). alpha is set
  to 0 where ``g = 0`` or the denominator vanishes. Sums run over the valid
  (unpadded) part of the feature map.
"""
import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ..registry import EXPLAINERS
from .adapters import ForwardState, LevelGradients
from ..structures import MapWindows
from .heatmap import weighted_activation_map
from .odam import (ODAM, crop_to_support, paste_windows_nchw,
                   roi_map_windows)


def gradcampp_weights(grads: Tensor, activations: Tensor,
                      eps: float = 0.0) -> Tensor:
    """Grad-CAM++ channel weights from first-order gradients.

    Args:
        grads (Tensor): dS/dA per explained scalar, (N, C, H, W).
        activations (Tensor): A, (N, C, H, W) or (C, H, W).
        eps (float): Added to the denominator (0: exact closed form).

    Returns:
        Tensor: Weights w_k, (N, C).
    """
    g2 = grads.pow(2)
    g3 = g2 * grads
    act_sum = activations.sum(dim=(-2, -1), keepdim=True)
    denom = 2 * g2 + act_sum * g3 + eps
    valid = (grads != 0) & (denom != 0)
    alpha = torch.where(valid, g2 / denom.masked_fill(~valid, 1.0),
                        torch.zeros_like(g2))
    return (alpha * grads.clamp(min=0)).sum(dim=(-2, -1))


def gradcampp_map(grads: Tensor, activations: Tensor,
                  grad_mode: str = 'pos_relu') -> Tensor:
    """Grad-CAM++ heat maps on the feature grid.

    Args:
        grads (Tensor): (N, C, H, W).
        activations (Tensor): (N, C, H, W) or (C, H, W).
        grad_mode (str): See :func:`heatmap.weighted_activation_map`
            (``'pos_relu'``: the usual ReLU).

    Returns:
        Tensor: (N, H, W).
    """
    weights = gradcampp_weights(grads, activations)
    return weighted_activation_map(weights[..., None, None], activations,
                                   grad_mode)


@EXPLAINERS.register_module()
class GradCAM(ODAM):
    """Grad-CAM of a detection's confidence: ODAM with ``smooth='global'``.

    Textbook by default: ``method='auto'`` takes the batched path only where
    it gives the exact gradients (heads without GroupNorm, RoI features);
    elsewhere (e.g. FCOS's GroupNorm tower) one exact autograd call per
    detection, since a global-average weight is sensitive to the gradient
    through the normalisation statistics that the fast path drops.

    Args:
        feature (str): Explained feature map (see :class:`ODAM`).
        grad_mode (str): Sign convention (see :class:`ODAM`).
        level_fusion (str): ``'sum'`` or ``'max'`` over levels.
        method (str): ``'auto'`` (exact gradients, batched where that is
            exact), ``'fast'`` (batched path even where it approximates) or
            ``'exact'``.
        score_target (str): ``'score'`` (confidence; default) or ``'logit'``.
        chunk_size (int): Detections per chunk.
        cell_position (str): Where feature cells lie in the image (see
            :class:`ODAM`).
    """

    def __init__(self, feature: str = 'neck', grad_mode: str = 'pos_relu',
                 level_fusion: str = 'sum', method: str = 'auto',
                 score_target: str = 'score', chunk_size: int = 64,
                 cell_position: str = 'grid') -> None:
        super().__init__(feature=feature, grad_mode=grad_mode, smooth='global',
                         level_fusion=level_fusion, method=method,
                         score_target=score_target, chunk_size=chunk_size,
                         cell_position=cell_position)

    auto_allows_approximate_gradients = False


@EXPLAINERS.register_module()
class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ of a detection's confidence (weights: module docstring).

    Same arguments as :class:`GradCAM`.
    """

    def feature_maps(self, grads: Tensor, activations: Tensor,
                     sigmas: Optional[Tensor] = None,
                     valid: Optional[Tuple[int, int]] = None) -> Tensor:
        """Maps on a feature grid from full-map gradients and activations.

        Args:
            grads (Tensor): (N, C, H, W).
            activations (Tensor): (N, C, H, W) or (C, H, W).
            sigmas (Tensor, optional): Unused (no smoothing).
            valid (tuple, optional): (rows, cols) of the unpadded part of the
                map; the sums of the weights run over it only. Default: all.

        Returns:
            Tensor: (N, H, W).
        """
        rows, cols = valid if valid is not None else grads.shape[-2:]
        weights = gradcampp_weights(grads[..., :rows, :cols],
                                    activations[..., :rows, :cols])
        return weighted_activation_map(weights[..., None, None], activations,
                                       self.grad_mode)

    def _level_windows(self, piece: LevelGradients, state: ForwardState,
                       img_idx: int, box_sizes: Tensor, rows: Tensor,
                       meta: dict) -> List[MapWindows]:
        """Maps of one gradient piece (the contract of
        :meth:`ODAM._level_windows`), from full-map weights."""
        if piece.roi_boxes is not None:  # RoI grid: whole RoI map is valid
            maps = self.feature_maps(piece.grads, piece.activations)
            return roi_map_windows(maps, piece.roi_boxes, rows,
                                   meta['img_shape'])
        stride = state.strides[piece.level]
        feat = state.activations[piece.level].detach()
        full = piece.grads.shape[-2:] == feat.shape[-2:] and \
            not bool(piece.offsets.any())
        grads = piece.grads if full else paste_windows_nchw(
            piece.grads, piece.offsets, feat.shape[-2:])
        img_shape = meta['img_shape']
        valid = (min(math.ceil(img_shape[0] / stride), feat.shape[-2]),
                 min(math.ceil(img_shape[1] / stride), feat.shape[-1]))
        maps, offsets = crop_to_support(
            self.feature_maps(grads, feat[img_idx], valid=valid))
        return [MapWindows(rows, maps, offsets, 'cells', int(stride),
                           self.cell_position)]


__all__ = ['GradCAM', 'GradCAMPlusPlus', 'gradcampp_weights', 'gradcampp_map']
