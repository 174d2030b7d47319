"""Adapters for Deformable DETR and DINO (``DeformableDETRHead`` and its
subclasses, e.g. ``DINOHead``), Conditional DETR and DAB-DETR (whose heads
refine their references the same way, on one level).

The detector's own ``forward_transformer`` runs on the explained multi-level
maps (the ChannelMapper outputs, or the backbone stages through the neck), and
the head's own ``forward`` on its ``hidden_states`` and ``references``, as
``DeformableDETRHead.predict`` does: each layer's box is
``sigmoid(reg(h) + inverse_sigmoid(reference))``. So the box's graph holds
whatever the references depend on in the model (two-stage variants and DINO
select their initial references from encoder proposals, detached by
MMDetection after the top-k; with box refinement each layer's reference comes
from the previous layer's prediction, detached likewise). The top-k
selection of ``DETRHead._predict_by_feat_single`` is replayed on the last
layer's logits to learn each detection's (query, class). Scalars and units as
:class:`~.detr.DETRAdapter` (sigmoid class score, normalised (cx, cy, w, h)
times the input size); exact path only. mmcv's multi-scale deformable
attention falls back to its PyTorch implementation (``grid_sample``) off
CUDA, which is differentiable in the value maps.
"""
from typing import Tuple

from mmdet.models.dense_heads import (ConditionalDETRHead, DABDETRHead,
                                     DeformableDETRHead)
from mmdet.models.detectors import DeformableDETR, DetectionTransformer
from torch import Tensor

from .detr import DETRAdapter
from .registry import register_adapter


@register_adapter(DeformableDETRHead)
class DeformableDETRAdapter(DETRAdapter):
    """Deformable DETR (single/two-stage, box refinement) and DINO."""

    features = ('neck', 'backbone')
    family = 'Deformable DETR / DINO with a DeformableDETRHead'
    relies_on = ('forward', 'predict_by_feat', '_predict_by_feat_single')
    detector_type = DeformableDETR

    def head_outputs(self, head_inputs: dict) -> Tuple[Tensor, Tensor]:
        return self.model.bbox_head(head_inputs['hidden_states'],
                                    head_inputs['references'])


@register_adapter(ConditionalDETRHead, DABDETRHead)
class ConditionalDETRAdapter(DeformableDETRAdapter):
    """Conditional DETR and DAB-DETR: heads that, like Deformable DETR's,
    add ``inverse_sigmoid(references)`` to their regression, on one
    ChannelMapper level."""

    family = 'Conditional / DAB-DETR'
    relies_on = ('forward', 'predict_by_feat', '_predict_by_feat_single')
    detector_type = DetectionTransformer
