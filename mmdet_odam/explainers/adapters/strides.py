"""Feature-map strides from a detector's own definitions.

A map's cells are placed in the image by its nominal stride (the product of
the strides of the layers that produced it), never by the ratio of tensor
sizes: a level of ``ceil(H / 64)`` rows on a 160-row input is stride 64, not
160 / 3 = 53. Dense heads state their levels' strides in their prior
generator; backbones and necks are read layer by layer here.
"""
from typing import List, Sequence

from torch import nn


def _conv_strides(module: nn.Module) -> int:
    """Product of the (square) strides of the convs / pools in ``module``."""
    total = 1
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            stride = m.stride if isinstance(m.stride, int) else m.stride[0]
            total *= int(stride)
    return total


def backbone_strides(backbone: nn.Module) -> List[int]:
    """Stride in input pixels of each output of a backbone.

    Supported: MMDetection's ``ResNet`` and its subclasses (ResNeXt, Res2Net,
    RegNet, ResNetV1d, ...): the stem's strides times the product of the
    stages' first-block strides (``backbone.strides``) up to each of
    ``out_indices``.

    Raises:
        ValueError: For any other backbone.
    """
    from mmdet.models.backbones import ResNet
    if not isinstance(backbone, ResNet):
        raise ValueError(
            f'cannot tell the output strides of {type(backbone).__name__} '
            'from its definition (supported: ResNet-family backbones); use '
            "feature='neck'")
    stem = backbone.stem if getattr(backbone, 'deep_stem', False) else \
        backbone.conv1
    stride = _conv_strides(stem)
    if isinstance(getattr(backbone, 'maxpool', None), nn.MaxPool2d):
        stride *= _conv_strides(backbone.maxpool)
    stage_strides = []
    for s in backbone.strides[:backbone.num_stages]:
        stride *= int(s)
        stage_strides.append(stride)
    return [stage_strides[i] for i in backbone.out_indices]


def neck_strides(neck: nn.Module, in_strides: Sequence[int]) -> List[int]:
    """Stride of each output of an ``FPN`` or ``ChannelMapper`` neck whose
    inputs have ``in_strides``; extra levels halve the resolution each
    (stride-2 convs or max-pooling, as both necks define them).

    Raises:
        ValueError: For any other neck.
    """
    from mmdet.models.necks import FPN, ChannelMapper
    if isinstance(neck, FPN):
        outs = list(in_strides[neck.start_level:neck.backbone_end_level])
        num_outs = neck.num_outs
    elif isinstance(neck, ChannelMapper):
        outs = list(in_strides)
        num_outs = len(neck.convs) + len(neck.extra_convs or ())
    else:
        raise ValueError(
            f'cannot tell the output strides of {type(neck).__name__} from '
            'its definition (supported: FPN, ChannelMapper)')
    while len(outs) < num_outs:
        outs.append(outs[-1] * 2)
    return outs[:num_outs]


def prior_strides(prior_generator) -> List[int]:
    """Per level stride of a prior generator (``strides`` as (w, h)), rounded
    to whole pixels (fractional steps: TF SSD anchors at input / map size).

    Raises:
        ValueError: For non-square strides (maps are placed by one stride).
    """
    out = []
    for stride in prior_generator.strides:
        w, h = (stride, stride) if isinstance(stride, (int, float)) else \
            stride
        if w != h:
            raise ValueError(f'non-square feature stride {(w, h)} is not '
                             'supported')
        out.append(int(round(w)))  # TF SSD steps: input / map size
    return out
