"""Receptive-field patches: batched per-detection gradients of a dense head.

A dense head is a stack of stride-1 convolutions applied to each level on its
own, so the prediction at cell (i, j) depends only on a (2R+1)^2 patch of that
level. Running the head on all patches at once (conv inputs masked outside the
map to reproduce zero padding; GroupNorm statistics frozen at the full map's)
gives each detection's gradient from a single backward pass. For a class logit
through a conv-GN-ReLU tower even the patch forward is skipped:
:func:`class_tower_gradients` carries the gradient back by hand from the ReLU
masks recorded during the full-map forward.
"""
from contextlib import contextmanager
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.models.dense_heads import AnchorFreeHead, AnchorHead
from torch import Tensor, nn


def _conv_radius(conv: nn.Conv2d) -> int:
    return max((k - 1) // 2 * d for k, d in zip(conv.kernel_size,
                                                 conv.dilation))


def _convs(module: nn.Module) -> List[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def receptive_radius(head: nn.Module) -> int:
    """Receptive radius R (in cells) of one output of a dense head.

    With separate ``cls_convs``/``reg_convs`` towers the deeper tower plus the
    widest output conv bounds the path; otherwise all convs are summed (a safe
    over-estimate).
    """
    if hasattr(head, 'cls_convs') and hasattr(head, 'reg_convs'):
        towers = [sum(_conv_radius(c) for c in _convs(t))
                  for t in (head.cls_convs, head.reg_convs)]
        tower_convs = set(_convs(head.cls_convs)) | set(_convs(head.reg_convs))
        outputs = [_conv_radius(c) for c in _convs(head)
                   if c not in tower_convs]
        return max(towers) + max(outputs, default=0)
    return sum(_conv_radius(c) for c in _convs(head))


def stacked_radius(module: nn.Module) -> int:
    """Receptive radius of the convs of ``module`` applied one after the
    other (each distinct conv counted once)."""
    return sum(_conv_radius(c) for c in _convs(module))


def can_use_patches(head: nn.Module) -> bool:
    """True for conv-only anchor/anchor-free heads (stride-1, no deformable
    or attention layers)."""
    return isinstance(head, (AnchorHead, AnchorFreeHead)) and \
        is_conv_only(head)


def is_conv_only(head: nn.Module) -> bool:
    """True when every layer of ``head`` is pointwise or a stride-1 conv (no
    deformable or attention layers, no batch norm in training mode)."""
    for module in head.modules():
        name = type(module).__name__
        if 'Deform' in name or 'DCN' in name or 'Attention' in name:
            return False
        if isinstance(module, nn.Conv2d) and any(s != 1 for s in module.stride):
            return False
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and \
                module.training:
            return False
    return True


def group_norm_stats(x: Tensor, num_groups: int) -> Tuple[Tensor, Tensor]:
    """Per-(sample, group) mean and biased variance, each (N, G)."""
    x = x.detach()
    # GroupNorm's own kernel: several times faster than torch.var_mean here
    # (eps=0 so that the variance comes back exactly; the output is unused)
    _, mean, rstd = torch.native_group_norm(
        x, None, None, x.shape[0], x.shape[1], x[0, 0].numel(), num_groups,
        0.0)
    return mean, rstd.pow(-2)


@contextmanager
def record_norm_stats(head: nn.Module):
    """Record what a patch backward needs from the head's full-map forward.

    For every GroupNorm, its statistics; for every ConvModule, the mask of its
    positive outputs (its ReLU's derivative, used by
    :func:`class_tower_gradients`). One entry per call, i.e. per level.

    Yields:
        dict: ``{GroupNorm: [(mean, var) per level]}``, each (B, G), and
        ``{ConvModule: [mask per level]}``, each (B, C, H, W) bool.
    """
    stats: Dict[nn.Module, list] = {}
    handles = []

    def norm_hook(mod, args, _out):
        stats[mod].append(group_norm_stats(args[0], mod.num_groups))

    def mask_hook(mod, _args, out):
        stats[mod].append(out.detach() > 0)

    for module in head.modules():
        if isinstance(module, nn.GroupNorm):
            stats[module] = []
            handles.append(module.register_forward_hook(norm_hook))
        elif isinstance(module, ConvModule):
            stats[module] = []
            handles.append(module.register_forward_hook(mask_hook))
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()


def frozen_group_norm_affine(module: nn.GroupNorm, mean: Tensor,
                             var: Tensor) -> Tuple[Tensor, Tensor]:
    """GroupNorm with given statistics as a per-channel affine map.

    ``GN(x) = x * scale + shift`` with ``scale = gamma / sqrt(var + eps)`` and
    ``shift = beta - mean * scale``; both stay differentiable w.r.t. the
    module's affine parameters (second-order training losses).

    Args:
        module (nn.GroupNorm): Provides groups, eps and the affine parameters.
        mean (Tensor): (N, G) means; var (Tensor): (N, G) variances.

    Returns:
        tuple[Tensor, Tensor]: ``scale`` and ``shift``, each (N, C, 1, 1).
    """
    per_group = module.num_channels // module.num_groups
    rstd = torch.rsqrt(var + module.eps).repeat_interleave(per_group, dim=1)
    mean = mean.repeat_interleave(per_group, dim=1)
    scale, shift = rstd, -mean * rstd
    if module.affine:
        scale = scale * module.weight[None]
        shift = shift * module.weight[None] + module.bias[None]
    return scale[..., None, None], shift[..., None, None]


def _centre_crop(x: Tensor, size: Tuple[int, int]) -> Tensor:
    top = (x.shape[-2] - size[0]) // 2
    left = (x.shape[-1] - size[1]) // 2
    return x[..., top:top + size[0], left:left + size[1]]


@contextmanager
def frozen_norms(head: nn.Module, stats: Dict[nn.Module, list], level: int,
                 batch_index: Tensor, masks: Tensor):
    """Make a patch forward of ``head`` match the full-map forward.

    Inside the context every conv runs without padding ("valid"), so each layer
    only computes the shrinking cone that reaches the centre output, and its
    input is masked to zero where the full map would have had zero padding;
    GroupNorm uses the recorded full-map statistics of ``level``.

    Args:
        head (nn.Module): The dense head.
        stats (dict): Output of :func:`record_norm_stats`.
        level (int): Level whose statistics to use.
        batch_index (Tensor): Image of each patch, (P, ).
        masks (Tensor): 1 inside the feature map, 0 outside, (P, 1, p, p).
    """
    handles, paddings, norms = [], {}, []
    inside = bool(masks.all())

    def mask_input(_mod, args):
        x = args[0]
        return (x * _centre_crop(masks, x.shape[-2:]), ) + tuple(args[1:])

    for module in head.modules():
        if isinstance(module, nn.GroupNorm):
            mean, var = stats[module][level]
            scale, shift = frozen_group_norm_affine(
                module, mean[batch_index], var[batch_index])
            # replaces the module's forward (an instance attribute) instead of
            # hooking its output, so the live statistics are never computed
            norms.append(module)
            module.forward = partial(torch.addcmul, shift, tensor2=scale)
        elif isinstance(module, nn.Conv2d):
            paddings[module] = module.padding
            module.padding = (0, 0)
            if not inside:  # patches reaching past the map's border
                handles.append(module.register_forward_pre_hook(mask_input))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, padding in paddings.items():
            module.padding = padding
        for module in norms:
            del module.forward


def patch_windows(feat: Tensor, batch: Tensor, row: Tensor, col: Tensor,
                  radius: int) -> Tuple[Tensor, Tensor]:
    """Cut (2R+1)^2 windows centred on cells, zero outside the map.

    Args:
        feat (Tensor): Feature map (B, C, H, W).
        batch, row, col (Tensor): Image index and cell of each window, (M, ).
        radius (int): R.

    Returns:
        tuple[Tensor, Tensor]: Windows (M, C, 2R+1, 2R+1) and validity masks
        (M, 1, 2R+1, 2R+1).
    """
    size = 2 * radius + 1
    padded = F.pad(feat, (radius, radius, radius, radius))
    taps = torch.arange(size, device=feat.device)
    rows = (row[:, None] + taps[None])  # in padded coordinates
    cols = (col[:, None] + taps[None])
    windows = padded[batch[:, None, None], :, rows[:, :, None],
                     cols[:, None, :]]  # (M, p, p, C)
    windows = windows.permute(0, 3, 1, 2).contiguous()
    masks = window_validity(row, col, radius, feat.shape[-2:])
    return windows, masks.to(feat.dtype)


def window_validity(row: Tensor, col: Tensor, radius: int,
                    size: Sequence[int]) -> Tensor:
    """(M, 1, 2R+1, 2R+1) bool: which cells of the windows centred on (row,
    col) lie on a map of ``size`` (H, W)."""
    taps = torch.arange(-radius, radius + 1, device=row.device)
    rows, cols = row[:, None] + taps, col[:, None] + taps
    valid_r = (rows >= 0) & (rows < size[0])
    valid_c = (cols >= 0) & (cols < size[1])
    return (valid_r[:, :, None] & valid_c[:, None, :])[:, None]


def linear_tower(convs: Sequence[nn.Module]) -> Optional[List[ConvModule]]:
    """The layers of a conv tower whose backward :func:`class_tower_gradients`
    can run by hand, or None.

    Each layer must be a ``ConvModule`` ordered conv -> norm -> act with a
    3x3-or-odd, stride-1, ungrouped conv, a GroupNorm (or no norm) and a ReLU
    (or no activation).
    """
    layers = []
    for layer in convs:
        if not isinstance(layer, ConvModule) or \
                tuple(layer.order) != ('conv', 'norm', 'act'):
            return None
        conv = layer.conv
        if not is_square_odd_conv(conv):
            return None
        if layer.with_norm and not isinstance(layer.norm, nn.GroupNorm):
            return None
        if layer.with_activation and not isinstance(layer.activate, nn.ReLU):
            return None
        layers.append(layer)
    return layers


def is_square_odd_conv(conv: nn.Module) -> bool:
    """A plain, ungrouped, stride-1 conv with a square odd kernel."""
    return type(conv) is nn.Conv2d and conv.groups == 1 and \
        tuple(conv.stride) == (1, 1) and conv.kernel_size[0] % 2 == 1 and \
        conv.kernel_size[0] == conv.kernel_size[1] and \
        conv.dilation[0] == conv.dilation[1]


def class_tower_gradients(layers: Sequence[ConvModule], output: nn.Conv2d,
                          stats: Dict[nn.Module, list], level: int,
                          batch: Tensor, row: Tensor, col: Tensor,
                          channel: Tensor, height: int, width: int) -> Tensor:
    """Gradient of class-output channels w.r.t. the tower input, by hand.

    With GroupNorm statistics frozen (as the patch forward) the tower is
    piecewise linear, so the gradient of ``output[channel]`` at cell
    (row, col) is the output conv's filter, masked by each layer's recorded
    ReLU mask and scaled by its norm, carried back by transposed convs. This
    needs no patch forward and batches every candidate into one transposed
    conv per layer. Differentiable w.r.t. the weights (second-order losses).

    Args:
        layers (Sequence[ConvModule]): The tower (:func:`linear_tower`).
        output (nn.Conv2d): The class output conv reading the tower.
        stats (dict): Recorded by :func:`record_norm_stats` on the full map.
        level (int): Level of all candidates.
        batch, row, col (Tensor): Image and cell of each candidate, (M, ).
        channel (Tensor): Output channel explained per candidate, (M, ).
        height, width (int): Size of the level's map.

    Returns:
        Tensor: dY/dA on (M, C, 2R+1, 2R+1) windows centred on each cell.
    """
    grad = output.weight[channel]  # (M, C, k, k): dY / d(tower output)
    radius = (output.kernel_size[0] - 1) // 2 * output.dilation[0]
    for layer in reversed(layers):
        if layer.with_activation:  # the ReLU's derivative
            grad = grad * patch_windows(stats[layer][level], batch, row, col,
                                        radius)[0]
        if layer.with_norm:
            mean, var = stats[layer.norm][level]
            scale, _ = frozen_group_norm_affine(layer.norm, mean[batch],
                                                var[batch])
            grad = grad * scale
        conv = layer.conv
        grad = F.conv_transpose2d(grad, conv.weight, dilation=conv.dilation)
        radius += (conv.kernel_size[0] - 1) // 2 * conv.dilation[0]
    # the map's zero padding does not depend on the features
    return grad * window_validity(row, col, radius, (height, width))
