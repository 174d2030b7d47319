"""The smallest additions MMDetection needs to run TensorFlow's SSD-MobileNetV2.

TensorFlow's Object Detection API model zoo ``ssd_mobilenet_v2_coco`` is built
here from MMDetection's own parts (``MobileNetV2``, ``SSDNeck`` with depthwise
extra layers, ``SSDHead``, ``DeltaXYWHBBoxCoder``) and MMCV's TF-"SAME" conv
(``Conv2dAdaptivePadding``). What differs from them:

* :class:`TFMobileNetV2`: TF's first SSD feature map is the *expansion* output
  of the first block of the 160-channel stage (``expanded_conv_13/expand``,
  576 channels, stride 16), which ``MobileNetV2.out_indices`` cannot name.
* :class:`TFSSDAnchorGenerator`: TF's multiple-grid anchors (scales evenly
  spaced from ``min_scale`` to ``max_scale``, one extra interpolated scale,
  3 anchors on the lowest level, centres at ``(j + 0.5) * input / size``).
* :class:`TFSSDHead`: sigmoid class scores without a background output.

Inference only: the TF model is used as trained; training these modules is
not supported (the SSD loss expects softmax scores with a background class).
"""
import math
from typing import List, Sequence, Tuple

import torch
from mmdet.models.backbones import MobileNetV2
from mmdet.models.dense_heads import SSDHead
from mmdet.models.task_modules.prior_generators import AnchorGenerator
from mmdet.models.utils import multi_apply
from mmdet.registry import MODELS, TASK_UTILS
from torch import Tensor


@MODELS.register_module()
class TFMobileNetV2(MobileNetV2):
    """MobileNetV2 that can also output a stage's first expansion.

    Args:
        expand_out_indices (Sequence[int]): Layers (as in ``out_indices``,
            0 = ``layer1``) whose first block's expansion conv output is
            returned too, before that block's depthwise conv. Their first
            block must have an expansion conv and no shortcut.
        **kwargs: ``MobileNetV2``'s arguments.

    Outputs are in network order (an expansion comes before its layer's own
    output).
    """

    def __init__(self, expand_out_indices: Sequence[int] = (),
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.expand_out_indices = tuple(expand_out_indices)
        for index in self.expand_out_indices:
            if not 0 <= index < len(self.layers) - 1:
                raise ValueError(
                    f'expand_out_indices: {index} is not an inverted-residual '
                    f'layer (0..{len(self.layers) - 2})')
            first = getattr(self, self.layers[index])[0]
            if not first.with_expand_conv or first.with_res_shortcut:
                raise ValueError(
                    f'expand_out_indices: layer{index + 1} starts without an '
                    'expansion conv or with a shortcut')

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.conv1(x)
        outs = []
        for i, layer_name in enumerate(self.layers):
            layer = getattr(self, layer_name)
            if i in self.expand_out_indices:
                first = layer[0]
                expanded = first.expand_conv(x)
                outs.append(expanded)
                x = layer[1:](first.linear_conv(
                    first.depthwise_conv(expanded)))
            else:
                x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


def tf_ssd_anchor_shapes(num_levels: int, min_scale: float, max_scale: float,
                         aspect_ratios: Sequence[float],
                         interpolated_scale_aspect_ratio: float = 1.0,
                         reduce_boxes_in_lowest_layer: bool = True
                         ) -> List[List[Tuple[float, float]]]:
    """TF's multiple-grid SSD anchor (width, height) per level, normalised.

    Scale of level k: ``min + (max - min) * k / (L - 1)``; level k gets one
    anchor per aspect ratio a, ``(s_k sqrt(a), s_k / sqrt(a))``, then one of
    scale ``sqrt(s_k s_{k+1})`` (``s_L = 1``) and the interpolated aspect
    ratio. The lowest level, when reduced, has (0.1, 1), (s_0, 2), (s_0, 1/2).

    Returns:
        list[list[tuple]]: Per level, per anchor in TF's channel order,
        (width, height) as fractions of the input.
    """
    scales = [min_scale + (max_scale - min_scale) * k / (num_levels - 1)
              for k in range(num_levels)] + [1.0]
    shapes = []
    for k in range(num_levels):
        if k == 0 and reduce_boxes_in_lowest_layer:
            pairs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            pairs = [(scales[k], a) for a in aspect_ratios]
            if interpolated_scale_aspect_ratio > 0:
                pairs.append((math.sqrt(scales[k] * scales[k + 1]),
                              interpolated_scale_aspect_ratio))
        shapes.append([(s * math.sqrt(a), s / math.sqrt(a)) for s, a in pairs])
    return shapes


@TASK_UTILS.register_module()
class TFSSDAnchorGenerator(AnchorGenerator):
    """TF Object Detection API SSD anchors for a fixed square input.

    Level k of ``featmap_sizes[k]`` cells has its anchor centres at
    ``(j + 0.5) * input_size / featmap_sizes[k]`` and the shapes of
    :func:`tf_ssd_anchor_shapes` scaled by ``input_size``. ``strides`` holds
    these (generally fractional) steps.

    Args:
        input_size (int): Side of the (square) network input, pixels.
        featmap_sizes (Sequence[int]): Side of each level's feature map.
        min_scale, max_scale (float): Anchor scales of the first and last
            levels, as fractions of the input.
        aspect_ratios (Sequence[float]): Width / height of each anchor.
        interpolated_scale_aspect_ratio (float): Aspect of the extra anchor
            of scale sqrt(s_k s_{k+1}) (0: none).
        reduce_boxes_in_lowest_layer (bool): 3 fixed anchors on level 0.
    """

    def __init__(self, input_size: int = 300,
                 featmap_sizes: Sequence[int] = (19, 10, 5, 3, 2, 1),
                 min_scale: float = 0.2, max_scale: float = 0.95,
                 aspect_ratios: Sequence[float] = (1.0, 2.0, 0.5, 3.0, 0.333),
                 interpolated_scale_aspect_ratio: float = 1.0,
                 reduce_boxes_in_lowest_layer: bool = True) -> None:
        if len(featmap_sizes) < 2:
            raise ValueError('featmap_sizes: TF SSD anchors need >= 2 levels')
        self.input_size = input_size
        self.strides = [(input_size / s, input_size / s)
                        for s in featmap_sizes]
        self.anchor_shapes = tf_ssd_anchor_shapes(
            len(featmap_sizes), min_scale, max_scale, aspect_ratios,
            interpolated_scale_aspect_ratio, reduce_boxes_in_lowest_layer)
        self.centers = [(w / 2, h / 2) for w, h in self.strides]
        self.center_offset = 0.
        self.use_box_type = False
        self.base_anchors = self.gen_base_anchors()

    def gen_base_anchors(self) -> List[Tensor]:
        """Per level (A, 4) anchors around the level's first centre."""
        anchors = []
        for shapes, (cx, cy) in zip(self.anchor_shapes, self.centers):
            wh = torch.tensor(shapes) * self.input_size
            ctr = torch.tensor([cx, cy])
            anchors.append(torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1))
        return anchors

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(input_size={self.input_size}, '
                f'levels={len(self.strides)})')


@MODELS.register_module()
class TFSSDHead(SSDHead):
    """``SSDHead`` with sigmoid class scores and no background output (TF's
    SSD, once its background channel is dropped), whose forward runs a
    per-level ``forward_single(x, level)``. Inference only."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.use_sigmoid_cls = True
        # BaseDenseHead's post-processing reads ``loss_cls``, which SSDHead
        # never builds (its loss is hand-written)
        self.loss_cls = None

    def _init_layers(self) -> None:
        self.cls_out_channels = self.num_classes  # no background output
        super()._init_layers()

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[List[Tensor], ...]:
        return multi_apply(self.forward_single, x, range(len(x)))

    def forward_single(self, x: Tensor, level: int) -> Tuple[Tensor, Tensor]:
        """Class and box outputs of one level (its own convs), as
        ``SSDHead.forward`` computes them, so that per-level callers (ODAM's
        receptive-field patches) can run one level alone."""
        return self.cls_convs[level](x), self.reg_convs[level](x)

    def loss_by_feat(self, *args, **kwargs):
        raise NotImplementedError(
            'TFSSDHead is inference-only (converted TF weights); training it '
            'is not supported')
