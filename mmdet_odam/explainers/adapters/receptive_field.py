"""Receptive-field patches: batched per-detection gradients of a dense head.

A dense head is a stack of stride-1 convolutions applied to each level on its
own, so the prediction at cell (i, j) depends only on a (2R+1)^2 patch of that
level. Running the head on all patches at once (conv inputs masked outside the
map to reproduce zero padding; GroupNorm statistics frozen at the full map's)
gives each detection's gradient from a single backward pass.
"""
from contextlib import contextmanager
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
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


def can_use_patches(head: nn.Module) -> bool:
    """True for conv-only anchor/anchor-free heads (stride-1, no deformable
    or attention layers)."""
    if not isinstance(head, (AnchorHead, AnchorFreeHead)):
        return False
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
    grouped = x.detach().reshape(x.shape[0], num_groups, -1)
    var, mean = torch.var_mean(grouped, dim=-1, unbiased=False)  # one pass
    return mean, var


@contextmanager
def record_norm_stats(head: nn.Module):
    """Record GroupNorm statistics of each call (one call per level).

    Yields:
        dict: ``{module: [(mean, var) per level]}``, each (B, G).
    """
    stats: Dict[nn.Module, list] = {}
    handles = []
    for module in head.modules():
        if isinstance(module, nn.GroupNorm):
            stats[module] = []

            def hook(mod, args, _out):
                stats[mod].append(group_norm_stats(args[0], mod.num_groups))

            handles.append(module.register_forward_hook(hook))
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()


def frozen_group_norm(x: Tensor, module: nn.GroupNorm, mean: Tensor,
                      var: Tensor) -> Tensor:
    """GroupNorm with given statistics.

    Args:
        x (Tensor): Input (N, C, h, w).
        module (nn.GroupNorm): Provides groups, eps and the affine parameters.
        mean (Tensor): (N, G) means; var (Tensor): (N, G) variances.

    Returns:
        Tensor: Normalised x, (N, C, h, w).
    """
    n, c, h, w = x.shape
    g = module.num_groups
    xg = x.reshape(n, g, c // g, h, w)
    xg = (xg - mean[:, :, None, None, None]) * torch.rsqrt(
        var[:, :, None, None, None] + module.eps)
    out = xg.reshape(n, c, h, w)
    if module.affine:
        out = out * module.weight[None, :, None, None] + \
            module.bias[None, :, None, None]
    return out


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
    handles, paddings = [], {}

    def mask_input(_mod, args):
        x = args[0]
        return (x * _centre_crop(masks, x.shape[-2:]), ) + tuple(args[1:])

    for module in head.modules():
        if isinstance(module, nn.GroupNorm):
            mean, var = stats[module][level]

            def norm_hook(mod, args, _out, mean=mean, var=var):
                return frozen_group_norm(args[0], mod, mean[batch_index],
                                         var[batch_index])

            handles.append(module.register_forward_hook(norm_hook))
        elif isinstance(module, nn.Conv2d):
            paddings[module] = module.padding
            module.padding = (0, 0)
            handles.append(module.register_forward_pre_hook(mask_input))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, padding in paddings.items():
            module.padding = padding


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
    height, width = feat.shape[-2:]
    valid_r = (rows - radius >= 0) & (rows - radius < height)
    valid_c = (cols - radius >= 0) & (cols - radius < width)
    masks = (valid_r[:, :, None] & valid_c[:, None, :])[:, None].to(feat.dtype)
    return windows, masks
