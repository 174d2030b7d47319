"""Adapter for DETR-style detectors (``DetectionTransformer`` with a
``DETRHead``).

DETR has no NMS: its head keeps the top-k (query, class) pairs. The same
selection is replayed on the same logits to learn each detection's query and
checked against the head's output. Scalars: ``score`` = the head's class
probability (softmax without the no-object class, or sigmoid), ``logit`` = the
class logit; box extents from the query's normalised (cx, cy, w, h) scaled to
the input image. Transformers mix all positions, so the exact path (one autograd
call per detection and attribute) is used; features ``'neck'`` (the
ChannelMapper output) or ``'backbone'`` (the last ResNet stage, as the paper).
"""
import torch
import torch.nn.functional as F
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor

from .base import ATTRIBUTES, DetectorAdapter, ForwardState, outward_extents


class DETRAdapter(DetectorAdapter):
    """DETR (and DETR-like heads whose ``forward`` returns per-layer outputs)."""

    def forward(self, inputs: Tensor, data_samples,
                keep_graph: bool = True) -> ForwardState:
        # no fast path: the graph is always needed
        model = self.model
        metas = [ds.metainfo for ds in data_samples]
        leaves, feats = self.backbone_or_neck_leaves(inputs)
        head_inputs = model.forward_transformer(feats, data_samples)
        cls_scores, bbox_preds = model.bbox_head(head_inputs['hidden_states'])
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
