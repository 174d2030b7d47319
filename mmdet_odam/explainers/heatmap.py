"""Pure tensor functions of ODAM (Eq. 1-2 of the paper) and its Grad-CAM limit.

Shapes follow MMDetection's docstring convention: N explained scalars, C channels,
(H, W) spatial size of a feature map.
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

GRAD_MODES = ('pos_relu', 'neg_relu', 'pos', 'abs')
# modes whose maps are >= 0 everywhere (all but the signed 'pos')
NON_NEGATIVE_GRAD_MODES = ('pos_relu', 'neg_relu', 'abs')
# Where a feature cell (i, j) of stride s sits in input pixels (see
# upsample_cells): 'grid' = the centre of the s x s block it covers, pixel
# coordinate (i + 0.5) * s (a plain resize); 'receptive_field' = pixel
# (i*s, j*s), the geometric centre of its receptive field in conv nets with
# 'same' padding.
CELL_POSITIONS = ('grid', 'receptive_field')
# Kernel radius in units of sigma; 3 sigma keeps > 99.7% of the Gaussian mass.
TRUNCATE = 3.0


def gaussian_kernels_1d(sigmas: Tensor, radius: int) -> Tensor:
    """Normalised 1-D Gaussian kernels, one per sigma, sharing one buffer.

    Each kernel is truncated at its own radius ``ceil(TRUNCATE * sigma)``
    (zero taps beyond), so that a map's smoothing does not depend on the
    other sigmas it is batched with (the batch, chunk or window grouping).

    Args:
        sigmas (Tensor): Standard deviations, shape (N, ), in feature cells.
        radius (int): Half width of the buffer, at least every kernel's own
            radius (:func:`kernel_radius`); ``2 * radius + 1`` taps.

    Returns:
        Tensor: Kernels of shape (N, 2 * radius + 1), each summing to 1.
    """
    taps = torch.arange(-radius, radius + 1, device=sigmas.device,
                        dtype=sigmas.dtype)
    kernels = torch.exp(-0.5 * (taps[None] / sigmas[:, None]).pow(2))
    # in float64 as kernel_radius computes it, so that the largest sigma
    # keeps the full buffer
    own = (sigmas.double() * TRUNCATE).ceil().to(sigmas.dtype)
    kernels = kernels * (taps.abs()[None] <= own[:, None])
    return kernels / kernels.sum(dim=1, keepdim=True)


def kernel_radius(sigmas: Union[Tensor, float]) -> int:
    """Radius (in cells) of the truncated Gaussian for the largest sigma."""
    max_sigma = float(sigmas.max()) if isinstance(sigmas, Tensor) else sigmas
    return max(int(math.ceil(TRUNCATE * max_sigma)), 0)


def gaussian_smooth(grads: Tensor, sigmas: Tensor, pad: int = 0) -> Tensor:
    """Separable Gaussian smoothing with one sigma per sample (the paper's Phi).

    The gradient outside the map is zero, so zero padding is exact here.

    Args:
        grads (Tensor): Gradient maps, shape (N, C, H, W).
        sigmas (Tensor): Per-sample sigma in cells, shape (N, ). Values <= 0
            leave that sample unchanged.
        pad (int): Zero cells added on every side before smoothing, so that
            the result also covers where the gradient spreads to.

    Returns:
        Tensor: Smoothed maps, shape (N, C, H + 2 * pad, W + 2 * pad).
    """
    num, channels, height, width = grads.shape
    sigmas = sigmas.to(grads)
    identity = sigmas <= 0
    radius = kernel_radius(sigmas.clamp(min=1e-6)) if num else 0
    if radius == 0 or bool(identity.all()):
        return F.pad(grads, (pad, ) * 4) if pad else grads
    kernels = gaussian_kernels_1d(sigmas.clamp(min=1e-6), radius)
    delta = torch.zeros_like(kernels)
    delta[:, radius] = 1
    kernels = torch.where(identity[:, None], delta, kernels)
    out_h, out_w = height + 2 * pad, width + 2 * pad
    if max(out_h, out_w) <= SMALL_MAP:
        # small windows (many detections): products with banded matrices,
        # channels innermost, beat a grouped conv with one group per (sample,
        # channel); the result keeps that channels-last memory layout
        x = grads.permute(0, 2, 3, 1).reshape(num, height, width * channels)
        x = torch.bmm(_banded(kernels, radius, height, pad), x)
        x = _banded(kernels, radius, width, pad)[:, None] @ \
            x.reshape(num, out_h, width, channels)
        return x.permute(0, 3, 1, 2)
    # One grouped conv: every (sample, channel) pair is its own group.
    kernels = kernels.repeat_interleave(channels, dim=0)  # (N*C, k)
    x = F.pad(grads, (pad, ) * 4).reshape(1, num * channels, out_h, out_w)
    x = F.conv2d(x, kernels[:, None, :, None], padding=(radius, 0),
                 groups=num * channels)
    x = F.conv2d(x, kernels[:, None, None, :], padding=(0, radius),
                 groups=num * channels)
    return x.reshape(num, channels, out_h, out_w)


# Side length up to which gaussian_smooth uses banded matrix products.
SMALL_MAP = 48


def _banded(kernels: Tensor, radius: int, size: int, pad: int = 0) -> Tensor:
    """(N, size + 2 pad, size) matrices applying each 1-D kernel to a signal
    zero-padded by ``pad`` (and by the kernel's radius beyond)."""
    rows = torch.arange(size + 2 * pad, device=kernels.device)
    cols = torch.arange(size, device=kernels.device)
    offset = rows[:, None] - cols[None] - pad + radius
    inside = (offset >= 0) & (offset <= 2 * radius)
    return kernels[:, offset.clamp(0, 2 * radius)] * inside


def global_average(grads: Tensor) -> Tensor:
    """Grad-CAM's channel weights broadcast back to the map.

    Args:
        grads (Tensor): Gradient maps, shape (N, C, H, W).

    Returns:
        Tensor: Spatially constant maps of the per-channel mean, (N, C, H, W).
    """
    return grads.mean(dim=(2, 3), keepdim=True).expand_as(grads)


def smooth_gradients(grads: Tensor, smooth: Union[str, float],
                     sigmas: Optional[Tensor] = None) -> Tensor:
    """Apply the weighting function Phi to gradient maps.

    Args:
        grads (Tensor): Gradient maps, shape (N, C, H, W).
        smooth (str | float): ``'none'`` (identity), ``'global'`` (global
            average: ODAM reduces to Grad-CAM), ``'adaptive'`` (Gaussian with
            the per-sample ``sigmas``) or a fixed sigma in cells.
        sigmas (Tensor, optional): Per-sample sigmas (N, ) for ``'adaptive'``.

    Returns:
        Tensor: Weight maps w_k, shape (N, C, H, W).
    """
    if smooth == 'none':
        return grads
    if smooth == 'global':
        return global_average(grads)
    if smooth == 'adaptive':
        if sigmas is None:
            raise ValueError("smooth='adaptive' needs per-sample sigmas")
        return gaussian_smooth(grads, sigmas)
    if isinstance(smooth, (int, float)) and not isinstance(smooth, bool):
        return gaussian_smooth(grads, grads.new_full((grads.shape[0], ),
                                                     float(smooth)))
    raise ValueError(f"unknown smooth option {smooth!r}: use 'adaptive', "
                     "'none', 'global' or a sigma in feature cells")


def weighted_activation_map(weights: Tensor, activations: Tensor,
                            grad_mode: str = 'pos_relu') -> Tensor:
    """H = f(sum_k w_k * A_k) with the sign convention of App. A.5.6.

    Args:
        weights (Tensor): Smoothed gradients Phi(dY/dA), shape (N, C, H, W).
        activations (Tensor): Feature maps A, shape (N, C, H, W) or (C, H, W).
        grad_mode (str): ``'pos_relu'`` ReLU(sum w A) (features that increase
            Y, e.g. expand a box; default); ``'neg_relu'`` ReLU(-sum w A)
            (features that decrease Y); ``'pos'`` the signed sum; ``'abs'``
            its magnitude.

    Returns:
        Tensor: Heat maps, shape (N, H, W).
    """
    if grad_mode not in GRAD_MODES:
        raise ValueError(f'unknown grad_mode {grad_mode!r}; choose from '
                         f'{GRAD_MODES}')
    if weights.stride(1) == 1 and activations.stride(-3) == 1:
        # channels innermost in memory (small windows): einsum contracts them
        # as a batched matrix product, several times faster than mul + sum
        signed = torch.einsum('nchw,nchw->nhw' if activations.dim() == 4
                              else 'nchw,chw->nhw', weights, activations)
    else:
        signed = (weights * activations).sum(dim=1)
    if grad_mode == 'pos_relu':
        return signed.clamp(min=0)
    if grad_mode == 'neg_relu':
        return (-signed).clamp(min=0)
    if grad_mode == 'abs':
        return signed.abs()
    return signed


def odam_map(grads: Tensor, activations: Tensor, smooth: Union[str, float] =
             'adaptive', sigmas: Optional[Tensor] = None,
             grad_mode: str = 'pos_relu') -> Tensor:
    """ODAM heat maps (Eq. 2): H = ReLU(sum_k Phi(dY/dA_k) * A_k).

    Args:
        grads (Tensor): dY/dA for each explained scalar, shape (N, C, H, W).
        activations (Tensor): A, shape (N, C, H, W) or (C, H, W).
        smooth (str | float): See :func:`smooth_gradients`.
        sigmas (Tensor, optional): Per-sample sigmas (N, ) for 'adaptive'.
        grad_mode (str): See :func:`weighted_activation_map`.

    Returns:
        Tensor: Heat maps on the feature grid, shape (N, H, W).
    """
    weights = smooth_gradients(grads, smooth, sigmas)
    return weighted_activation_map(weights, activations, grad_mode)


def adaptive_sigmas(box_sizes: Tensor, strides: Tensor,
                    sigma_scale: float = 0.1, min_sigma: float = 0.5) -> Tensor:
    """Gaussian sigma sized to each object on its feature map.

    sigma = max(min_sigma, sigma_scale * sqrt(w * h) / stride), i.e. a fixed
    fraction of the object's geometric-mean side measured in feature cells.

    Args:
        box_sizes (Tensor): Box widths and heights in input pixels, (N, 2).
        strides (Tensor): Stride of the feature map of each sample, (N, ).
        sigma_scale (float): Fraction of the object size.
        min_sigma (float): Lower bound in cells (degenerate boxes).

    Returns:
        Tensor: Sigmas in feature cells, shape (N, ).
    """
    side = box_sizes.clamp(min=0).prod(dim=1).sqrt()
    return (sigma_scale * side / strides.to(side)).clamp(min=min_sigma)


def smoothing_sigmas(smooth: Union[str, float], box_sizes: Tensor,
                     strides: Tensor, sigma_scale: float = 0.1,
                     min_sigma: float = 0.5) -> Optional[Tensor]:
    """Per-sample Gaussian sigmas for a ``smooth`` option.

    Args:
        smooth (str | float): ``'adaptive'`` (:func:`adaptive_sigmas`), a fixed
            sigma in cells, or ``'none'`` / ``'global'`` (no Gaussian).
        box_sizes (Tensor): Box widths and heights in input pixels, (N, 2).
        strides (Tensor): Stride of each sample's feature map, (N, ).
        sigma_scale (float): See :func:`adaptive_sigmas`.
        min_sigma (float): See :func:`adaptive_sigmas`.

    Returns:
        Tensor | None: Sigmas in cells (N, ), or None without a Gaussian.

    Raises:
        ValueError: For ``'adaptive'`` with a non-finite box size (e.g. an
            overflowed exp-size box of a random-weight YOLOX).
    """
    if smooth == 'adaptive':
        if not bool(torch.isfinite(box_sizes).all()):
            raise ValueError("a detection's box size is not finite, so its "
                             "adaptive smoothing is undefined; use "
                             "smooth='none' or a fixed sigma")
        return adaptive_sigmas(box_sizes, strides, sigma_scale, min_sigma)
    if isinstance(smooth, (int, float)) and not isinstance(smooth, bool):
        return box_sizes.new_full((len(box_sizes), ), float(smooth))
    return None


def normalize_maps(maps: Tensor, eps: float = 1e-12, inplace: bool = False,
                   signed: bool = False) -> Tensor:
    """Scale each map by its largest value (magnitude for signed maps).

    Non-negative maps land in [0, 1]; signed maps (``grad_mode='pos'``) in
    [-1, 1]. An all-zero map stays all zero (documented empty explanation).

    Args:
        maps (Tensor): Maps of shape (..., H, W).
        eps (float): Peaks below it count as zero.
        inplace (bool): Divide ``maps`` itself (saves a copy of big tensors).
        signed (bool): Maps may be negative; use the peak magnitude.

    Returns:
        Tensor: Normalised maps, same shape.
    """
    flat = maps.flatten(-2)
    peak = (flat.abs() if signed else flat).amax(dim=-1)
    if maps.numel() and not signed and bool((peak < 0).any()):
        raise ValueError('normalize_maps expects non-negative maps unless '
                         'signed=True')
    # zero maps: 0 / (eps) stays 0, so no branch is needed
    divisor = peak.clamp(min=eps)[..., None, None]
    return maps.div_(divisor) if inplace else maps / divisor


def check_cell_position(cell_position: str) -> str:
    """``cell_position`` itself if it is one of ``CELL_POSITIONS``."""
    if cell_position not in CELL_POSITIONS:
        raise ValueError(f'cell_position must be one of {CELL_POSITIONS}, got '
                         f'{cell_position!r}')
    return cell_position


def upsample_cells(maps: Tensor, stride: int, margin: bool = False,
                   cell_position: str = 'grid') -> Tensor:
    """Bilinear upsampling of cell maps by their stride, zero outside them.

    ``cell_position`` says where cell (i, j) lies in input pixels:

    * ``'grid'`` (default): at the centre of the s x s block of pixels it
      covers, (i + 0.5) * s in continuous coordinates: a plain resize
      (``align_corners=False``), what Grad-CAM implementations and the paper
      do; exact for non-overlapping patch embeddings (ViT, Swin).
    * ``'receptive_field'``: on pixel (i * s, j * s), the geometric centre of
      the cell's receptive field. Convolutions with 'same' padding (k x k,
      padding (k - 1) / 2, any stride) keep the first output's receptive field
      centred on the first input pixel, so in a plain conv stack cell i of
      stride s sees pixels centred on i * s, (s - 1) / 2 pixels up-left of
      its block centre. This is ``F.interpolate(align_corners=True)`` with
      exactly s pixels per cell. Where a trained cell's evidence sits need
      not be that centre, so it is an option, not the default (README:
      measured on the tiny FCOS it raises box Pointing Game on small objects
      but lowers the mask metrics).

    Heat beyond the grid is zero (one zero cell is padded on every side), so a
    window of a map upsamples to exactly the same pixels as the whole map.

    Args:
        maps (Tensor): (N, H, W) on the cell grid.
        stride (int): Pixels per cell.
        margin (bool): Keep the bilinear fall-off into the padded cell before
            the first row/column and after the last (for windows pasted into a
            larger map); the output then starts one cell (``stride`` pixels)
            earlier.
        cell_position (str): ``'grid'`` or ``'receptive_field'``.

    Returns:
        Tensor: (N, H * s, W * s); with ``margin`` (N, (H + 2) * s, (W + 2) *
        s) for ``'grid'`` and (N, (H + 1) * s + 1, (W + 1) * s + 1) for
        ``'receptive_field'`` (whose padded cell after the last one lies on
        the last pixel).
    """
    aligned = check_cell_position(cell_position) == 'receptive_field'
    height, width = maps.shape[-2:]
    x = F.pad(maps, (1, 1, 1, 1))
    extra = 1 - stride if aligned else 0
    out_h, out_w = (height + 2) * stride + extra, (width + 2) * stride + extra
    if max(height, width) <= SMALL_MAP:
        # many small windows: two batched products with interpolation
        # matrices are several times faster than F.interpolate
        x = bilinear_matrix(height + 2, out_h, x, aligned)[None] @ x @ \
            bilinear_matrix(width + 2, out_w, x, aligned).T[None]
    else:
        x = F.interpolate(x[:, None], size=(out_h, out_w), mode='bilinear',
                          align_corners=aligned)[:, 0]
    if margin:
        return x
    return x[:, stride:stride + height * stride,
             stride:stride + width * stride]


def cell_shift(stride: float, cell_position: str = 'grid') -> float:
    """Pixel shift of cell centres from the centres of their s x s blocks.

    For maps sampled by block geometry (a cell spans [i * s, (i + 1) * s),
    e.g. ``grid_sample(align_corners=False)``), moving the spanned region by
    this shift puts cell i on its position of :func:`upsample_cells`: 0 for
    ``'grid'``, (1 - s) / 2 for ``'receptive_field'`` (pixel centre i * s + 0.5
    instead of (i + 0.5) * s).
    """
    if check_cell_position(cell_position) == 'grid':
        return 0.0
    return (1.0 - float(stride)) / 2


def bilinear_matrix(in_size: int, out_size: int, like: Tensor,
                    align_corners: bool = False) -> Tensor:
    """(out_size, in_size) matrix of 1-D linear resampling, as
    ``F.interpolate(mode='bilinear', align_corners=...)`` does it."""
    positions = torch.arange(out_size, device=like.device, dtype=like.dtype)
    if align_corners:
        scale = (in_size - 1) / max(out_size - 1, 1)
        src = positions * scale
    else:
        src = ((positions + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    low = src.floor().long().clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    frac = src - low.to(src.dtype)
    matrix = like.new_zeros((out_size, in_size))
    rows = torch.arange(out_size, device=like.device)
    matrix.index_put_((rows, low), 1 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix


def resampled_peak(values: Tensor, mat_y: Tensor, mat_x: Tensor,
                   signed: bool = False) -> Tensor:
    """Exact peak of ``mat_y @ values @ mat_x.T`` without computing all of it.

    Each output value of a linear resampling whose rows have non-negative
    weights summing to at most 1 (bilinear ``bilinear_matrix``) is bounded by
    the largest input it mixes. So once some output value ``lb`` is known
    (those around the input's peak), only outputs mixing an input >= ``lb``
    can be larger: those rows and columns are evaluated, nothing else.

    Args:
        values (Tensor): (h, w) input map.
        mat_y (Tensor): (H, h) row resampling; mat_x (Tensor): (W, w).
        signed (bool): Peak magnitude instead of peak value.

    Returns:
        Tensor: Scalar, the peak (0 for an all-zero map).
    """
    mag = values.abs() if signed else values
    if not values.numel() or not bool((mag > 0).any()):
        return values.new_zeros(())

    def peak_over(in_rows: Tensor, in_cols: Tensor) -> Tensor:
        out_rows = mat_y[:, in_rows].ne(0).any(dim=1).nonzero()[:, 0]
        out_cols = mat_x[:, in_cols].ne(0).any(dim=1).nonzero()[:, 0]
        if not len(out_rows) or not len(out_cols):
            return values.new_zeros(())
        out = mat_y[out_rows] @ values @ mat_x[out_cols].T
        return (out.abs() if signed else out).max()

    top = int(mag.argmax())
    row, col = divmod(top, values.shape[1])
    lower = peak_over(torch.tensor([row], device=values.device),
                      torch.tensor([col], device=values.device))
    candidates = mag >= lower
    return torch.maximum(lower, peak_over(
        candidates.any(dim=1).nonzero()[:, 0],
        candidates.any(dim=0).nonzero()[:, 0]))


def feature_to_image(maps: Tensor, stride: int, img_shape: Sequence[int],
                     ori_shape: Optional[Sequence[int]] = None,
                     cell_position: str = 'grid') -> Tensor:
    """Resample feature-grid maps to the input image and then the original one.

    The feature grid covers the padded batch; only its part inside the
    unpadded input (``img_shape``) is kept, so maps are not stretched over the
    padding (a common pitfall).

    Args:
        maps (Tensor): Maps on the feature grid, shape (N, H, W).
        stride (int): Feature stride in input pixels.
        img_shape (tuple): (h, w) of the resized, unpadded network input.
        ori_shape (tuple, optional): (h, w) of the original image. Defaults to
            ``img_shape``.
        cell_position (str): Where cells lie in input pixels, see
            :func:`upsample_cells`.

    Returns:
        Tensor: Maps in the original image's pixel grid, (N, h_ori, w_ori).
    """
    img_h, img_w = int(img_shape[0]), int(img_shape[1])
    x = upsample_cells(maps, stride,
                       cell_position=cell_position)[:, :img_h, :img_w]
    if ori_shape is not None and tuple(ori_shape[:2]) != (img_h, img_w):
        x = F.interpolate(x[:, None], size=(int(ori_shape[0]),
                                            int(ori_shape[1])),
                          mode='bilinear', align_corners=False)[:, 0]
    return x


def support_box(mask: Tensor) -> Optional[Tuple[int, int, int, int]]:
    """(y0, x0, y1, x1) bounding the True cells of an (H, W) mask, None when
    it has none."""
    rows = mask.any(dim=1).nonzero()[:, 0]
    if not len(rows):
        return None
    cols = mask.any(dim=0).nonzero()[:, 0]
    return (int(rows[0]), int(cols[0]), int(rows[-1]) + 1,
            int(cols[-1]) + 1)


def box_windows(maps: Tensor, boxes: Tensor, out_shape: Tuple[int, int]
                ) -> List[Tuple[int, Tensor, Tuple[int, int]]]:
    """Small maps (e.g. 7x7 RoI-feature maps) resized into their boxes,
    rounded and clipped to an (H, W) canvas.

    Args:
        maps (Tensor): Maps on the RoI grid, shape (N, h, w).
        boxes (Tensor): Boxes (x1, y1, x2, y2) in canvas pixels, (N, 4).
        out_shape (tuple): (H, W) of the canvas.

    Returns:
        list: ``(n, window, (y1, x1))`` for each map whose clipped box is not
        empty, ``window`` of the clipped box's size.
    """
    height, width = out_shape
    out = []
    for n, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
        x1, y1 = max(x1, 0), max(y1, 0)
        x2, y2 = min(x2, width), min(y2, height)
        if x2 <= x1 or y2 <= y1:
            continue
        out.append((n, F.interpolate(
            maps[n][None, None], size=(y2 - y1, x2 - x1), mode='bilinear',
            align_corners=False)[0, 0], (y1, x1)))
    return out


def paste_in_boxes(maps: Tensor, boxes: Tensor,
                   out_shape: Tuple[int, int]) -> Tensor:
    """Paste small maps into their boxes (:func:`box_windows`).

    Returns:
        Tensor: Canvas maps, shape (N, H, W), zero outside each box.
    """
    out = maps.new_zeros((maps.shape[0], ) + tuple(out_shape))
    for n, window, (y, x) in box_windows(maps, boxes, out_shape):
        out[n, y:y + window.shape[0], x:x + window.shape[1]] = window
    return out
