"""Adapter for DETR-style detectors (``DetectionTransformer`` with a
``DETRHead``).

DETR has no NMS: its head keeps the top-k (query, class) pairs. The same
selection is replayed on the same logits to learn each detection's query and
checked against the head's output. Scalars: ``score`` = the head's class
probability (softmax without the no-object class, or sigmoid), ``logit`` = the
class logit; box extents from the query's normalised (cx, cy, w, h) scaled to
the input image. Transformers mix all positions, so the exact path (one autograd
call per detection and attribute) is used. Features:

* ``'neck'``: the ChannelMapper output (default);
* ``'backbone'``: the last ResNet stage, as the paper;
* ``'encoder'``: the transformer encoder's output memory, the map the
  decoder's cross-attention reads, laid out as (B, C, H, W) on the neck's grid.
  Its gradient needs only the decoder's backward (the encoder is run once,
  without a graph), so it is several times cheaper per map than the others.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.dense_heads import DETRHead
from mmdet.models.detectors import DetectionTransformer
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData
from torch import Tensor

from .registry import register_adapter
from .base import DetectorAdapter, ForwardState, outward_extents


@register_adapter(DETRHead)
class DETRAdapter(DetectorAdapter):
    """DETR (and DETR-like heads whose ``forward`` returns per-layer outputs)."""

    features = ('neck', 'backbone', 'encoder')
    family = 'DETR with a DETRHead'
    relies_on = ('forward', 'predict_by_feat')
    detector_type = DetectionTransformer

    def forward(self, inputs: Tensor, data_samples,
                keep_graph: bool = True) -> ForwardState:
        # no fast path: the graph is always needed
        model = self.model
        metas = [ds.metainfo for ds in data_samples]
        if self.feature == 'encoder':
            leaves, head_inputs = self.encoder_memory_leaves(
                inputs, data_samples)
        else:
            leaves, feats = self.backbone_or_neck_leaves(inputs)
            head_inputs = model.forward_transformer(feats, data_samples)
        cls_scores, bbox_preds = self.head_outputs(head_inputs)
        with torch.no_grad():
            results = model.bbox_head.predict_by_feat(
                cls_scores.detach(), bbox_preds.detach(), metas, rescale=True)
        head = model.bbox_head
        for img_idx, res in enumerate(results):
            query, labels = self._replay_topk(cls_scores[-1][img_idx].detach())
            if not torch.equal(labels, res.labels):
                raise RuntimeError('could not replay DETR top-k selection')
            res.cand_query = query
        return ForwardState(
            results=results, activations=leaves,
            strides=self.feature_strides(leaves),
            extras=dict(cls=cls_scores[-1], boxes=bbox_preds[-1], metas=metas,
                        sigmoid=head.loss_cls.use_sigmoid))

    def head_outputs(self, head_inputs: dict) -> Tuple[Tensor, Tensor]:
        """Per-layer class logits and normalised boxes of the head, from
        the keyword inputs the transformer gave it (``hidden_states``)."""
        return self.model.bbox_head(head_inputs['hidden_states'])

    def encoder_memory_leaves(self, inputs: Tensor, data_samples: list
                              ) -> Tuple[List[Tensor], dict]:
        """Run MMDetection's transformer with the encoder memory as leaf.

        ``DetectionTransformer.forward_transformer`` is ``pre_transformer ->
        forward_encoder -> pre_decoder -> forward_decoder``; the same model
        methods are called here, with the encoder's output detached in
        between, so that a gradient w.r.t. the memory runs back through the
        decoder only.

        Args:
            inputs (Tensor): Preprocessed images (B, 3, H_in, W_in).
            data_samples (list[DetDataSample]): With image metainfo.

        Returns:
            tuple: ``([memory], head_inputs)`` with the memory as a leaf map
            (B, C, h, w) on the grid of the map fed to the transformer (h * w
            encoder tokens, C = embed_dims), and the keyword inputs of the
            bbox head (``hidden_states`` (L, B, num_queries, C)).

        Raises:
            ValueError: If the memory does not have one token per cell of
                that map (a multi-level encoder such as Deformable DETR's).
        """
        model = self.model
        with torch.no_grad():  # the encoder is not differentiated
            feats = model.extract_feat(inputs)
            encoder_inputs, decoder_inputs = model.pre_transformer(
                feats, data_samples)
            encoder_outputs = model.forward_encoder(**encoder_inputs)
        memory = encoder_outputs['memory']  # (B, h * w, C)
        batch, tokens, channels = memory.shape
        height, width = feats[-1].shape[-2:]  # DETR reads the last level
        if tokens != height * width:
            raise ValueError(
                f'{type(model).__name__} encoder memory has {tokens} tokens, '
                f'not one per cell of its {height}x{width} input map; '
                "feature='encoder' supports single-level DETR encoders")
        # token t is cell (t // w, t % w): pre_transformer flattens (h, w)
        leaf = memory.transpose(1, 2).reshape(batch, channels, height, width)
        leaf = leaf.detach().requires_grad_()
        # the decoder reads the same (B, h * w, C) layout as in the model's
        # own forward (contiguous, so its matmuls round alike)
        encoder_outputs = dict(
            encoder_outputs,
            memory=leaf.flatten(2).transpose(1, 2).contiguous())
        tmp_decoder_inputs, head_inputs = model.pre_decoder(**encoder_outputs)
        decoder_inputs.update(tmp_decoder_inputs)
        head_inputs.update(model.forward_decoder(**decoder_inputs))
        return [leaf], head_inputs

    def feature_strides(self, leaves: Sequence[Tensor]) -> List[int]:
        """Nominal strides; the encoder memory lies on the grid of the map
        fed to the transformer (the last neck output)."""
        if self.feature != 'encoder':
            return super().feature_strides(leaves)
        model = self.model
        strides = self.neck_strides() if model.with_neck else \
            self.backbone_strides()
        return [strides[-1]] * len(leaves)

    def candidate_locations(self, state: ForwardState,
                            img_idx: int) -> InstanceData:
        """Every query of the image (``cand_query``)."""
        cls = state.extras['cls']
        return InstanceData(cand_query=torch.arange(cls.shape[1],
                                                    device=cls.device))

    def _replay_topk(self, cls_score: Tensor):
        head = self.model.bbox_head
        max_per_img = head.test_cfg.get('max_per_img', len(cls_score))
        if head.loss_cls.use_sigmoid:
            _, indexes = cls_score.sigmoid().view(-1).topk(max_per_img)
            return indexes // head.num_classes, indexes % head.num_classes
        scores, labels = F.softmax(cls_score, dim=-1)[..., :-1].max(-1)
        _, query = scores.topk(max_per_img)
        return query, labels[query]

    def candidate_scalars(self, state: ForwardState, img_idx: int) -> Tensor:
        res = state.results[img_idx]
        query, labels = res.cand_query, res.labels
        logits = state.extras['cls'][img_idx][query]
        rows = torch.arange(len(query), device=query.device)
        if self.score_target == 'logit':
            score = logits[rows, labels]
        elif state.extras['sigmoid']:
            score = logits[rows, labels].sigmoid()
        else:
            score = logits.softmax(-1)[rows, labels]
        img_h, img_w = state.extras['metas'][img_idx]['img_shape'][:2]
        boxes = bbox_cxcywh_to_xyxy(state.extras['boxes'][img_idx][query])
        boxes = boxes * boxes.new_tensor([img_w, img_h, img_w, img_h])
        return torch.cat([score[:, None], outward_extents(boxes)], dim=1)
