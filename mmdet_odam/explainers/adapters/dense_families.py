"""Dense-head families whose decoding differs from ``BaseDenseHead``'s.

ATSS keeps ``BaseDenseHead``'s post-processing (centerness as score factor,
like FCOS) and is explained by :class:`~.dense.DenseHeadAdapter` itself. The
adapters here change only what their head does differently, through the
hooks of :class:`~.dense.DenseHeadAdapter` (``decode``, ``box_channels``,
``grid_priors``, ``track_candidates``, ``forward_level``,
``receptive_radius``):

* GFL: boxes are the expectation of a discrete distribution per side.
* RTMDet: the head's ``forward`` loops over levels itself (no per-level
  ``forward_single``); the patch forward runs it on a one-level view.
* YOLOX: its own ``predict_by_feat`` (objectness x class score, boxes
  decoded from priors with strides); candidates are tracked through it.

Box scalars are in input-image pixels; the score is a probability (the raw
class logit with ``score_target='logit'``).
"""
import copy
from contextlib import contextmanager
from typing import ContextManager, List, Sequence

import torch
from mmdet.models.dense_heads import (GFLHead, RTMDetHead, RTMDetSepBNHead,
                                      YOLOXHead)
from mmengine.structures import InstanceData
from torch import Tensor, nn

from .dense import DenseHeadAdapter
from .receptive_field import is_conv_only, stacked_radius
from .registry import register_adapter


@register_adapter(GFLHead)
class GFLAdapter(DenseHeadAdapter):
    """GFL (Generalized Focal Loss).

    Differentiated: ``score`` = sigmoid of the class output (GFL's joint
    class-quality score, what it ranks by; ``logit``: the raw output); box
    extents = the signed corners of ``bbox_coder.decode(anchor centre,
    Integral(distribution) * stride)``, i.e. the expected distance of each
    side under the softmax of its discrete distribution, in input pixels.
    Candidates are tracked in GFL's own ``_predict_by_feat_single`` (it uses
    ``filter_scores_and_topk`` like ``BaseDenseHead``).
    """

    family = 'GFL (distribution box regression)'
    relies_on = ('predict_by_feat', '_predict_by_feat_single',
                 'forward_single')

    def box_channels(self) -> int:
        return 4 * (self.head.reg_max + 1)

    def decode(self, priors: Tensor, box_vec: Tensor, level: int) -> Tensor:
        head = self.head
        stride = head.prior_generator.strides[level][0]
        distances = head.integral(box_vec) * stride
        return head.bbox_coder.decode(head.anchor_center(priors), distances)


def one_level_view(head: nn.Module, level: int,
                   per_level: Sequence[str]) -> nn.Module:
    """A shallow view of a multi-level head that holds only ``level``.

    Module lists named in ``per_level`` (one entry per level) and the prior
    generator's strides are cut to that level, so the head's own ``forward``
    on a one-element tuple computes exactly that level. Sub-modules (and so
    weights, hooks) are the head's own; the head is not changed.
    """
    view = copy.copy(head)
    for name in ('_modules', '_parameters', '_buffers'):
        view.__dict__[name] = dict(head.__dict__[name])
    for name in per_level:
        if name in head._modules:
            view._modules[name] = nn.ModuleList([head._modules[name][level]])
    generator = copy.copy(head.prior_generator)
    generator.strides = [head.prior_generator.strides[level]]
    view.__dict__['prior_generator'] = generator
    return view


@register_adapter(RTMDetHead)
class RTMDetAdapter(DenseHeadAdapter):
    """RTMDet.

    Differentiated: ``score`` = sigmoid of the class output (with
    objectness, RTMDet's head output is already the logit of
    sqrt(sigmoid(cls) * sigmoid(obj))), no score factor; box extents = the
    signed corners of ``DistancePointBBoxCoder.decode(point, distance)``
    where the head outputs distances already multiplied by the stride, in
    input pixels. Candidates are tracked in ``BaseDenseHead``'s
    post-processing, which RTMDet keeps.

    Fast path: each level's prediction is a stack of stride-1 convs of that
    level (shared or per-level convs, per-level norms), so the receptive
    patches apply; the patch forward runs the head's own ``forward`` on a
    one-level view (:func:`one_level_view`). Exact with BatchNorm (eval: an
    affine map); GroupNorm statistics are frozen as for FCOS.
    """

    family = 'RTMDet'
    relies_on = ('predict_by_feat', '_predict_by_feat_single', 'forward')
    #: module lists of the head that hold one entry per level
    per_level: Sequence[str] = ('scales', )

    def forward_level(self, x: Tensor, level: int) -> tuple:
        view = one_level_view(self.head, level, self.per_level)
        return tuple(out[0] for out in type(self.head).forward(view, (x, )))


@register_adapter(RTMDetSepBNHead)
class RTMDetSepBNAdapter(RTMDetAdapter):
    """RTMDet with per-level norms and output convs (the COCO configs' head);
    see :class:`RTMDetAdapter`. Its fast path needs norms without recorded
    statistics per call (BatchNorm): per-level GroupNorms are refused."""

    relies_on = ('predict_by_feat', '_predict_by_feat_single', 'forward')
    per_level = ('cls_convs', 'reg_convs', 'rtm_cls', 'rtm_reg', 'rtm_obj')

    def has_fast_path(self) -> bool:
        return super().has_fast_path() and not any(
            isinstance(m, nn.GroupNorm) for m in self.head.modules())


@contextmanager
def track_yolox_candidates(head: YOLOXHead, featmap_sizes: Sequence):
    """Tag YOLOX's candidates with ``cand_level``/``cand_index``.

    ``head`` must be a private copy (``shared_weights_copy``): inside the
    context its ``_bbox_decode`` appends each prior's flat index (over all
    levels) as a fifth box column, which YOLOX's ``predict_by_feat`` carries
    through its score filter, and its ``_bbox_post_process`` turns that
    column into identity fields before running the class's own
    post-processing (rescale, ``batched_nms``). MMDetection's classes are not
    touched.

    Raises:
        TypeError: If the flat indices are not exact in the boxes' dtype.
    """
    cls = type(head)
    counts = torch.tensor([int(h) * int(w) for h, w in featmap_sizes])
    starts = counts.cumsum(0) - counts

    def indexing_decode(priors: Tensor, bbox_preds: Tensor) -> Tensor:
        boxes = cls._bbox_decode(head, priors, bbox_preds)
        num = boxes.shape[-2]
        if num > 2 / torch.finfo(boxes.dtype).eps:  # exact integers
            raise TypeError(f'{num} YOLOX priors cannot be tracked in '
                            f'{boxes.dtype}')
        flat = torch.arange(num, dtype=boxes.dtype, device=boxes.device)
        return torch.cat([boxes, flat.expand(boxes.shape[:-1])[..., None]],
                         dim=-1)

    def tagging_post_process(results: InstanceData, *args, **kwargs):
        flat = results.bboxes[:, 4].round().long()
        results.bboxes = results.bboxes[:, :4]
        level = torch.bucketize(flat, counts.cumsum(0).to(flat.device),
                                right=True)
        results.cand_level = level
        results.cand_index = flat - starts.to(flat.device)[level]
        return cls._bbox_post_process(head, results, *args, **kwargs)

    head._bbox_decode = indexing_decode
    head._bbox_post_process = tagging_post_process
    try:
        yield
    finally:
        del head._bbox_decode, head._bbox_post_process


@register_adapter(YOLOXHead)
class YOLOXAdapter(DenseHeadAdapter):
    """YOLOX.

    Differentiated: ``score`` = sigmoid(class output) * sigmoid(objectness)
    of the detected class (YOLOX's own score; ``logit``: the raw class
    output); box extents = the signed corners of YOLOX's ``_bbox_decode``
    (centre = offset * stride + prior, size = exp(output) * stride), in
    input pixels. Candidates (one per cell of each level) are tracked
    through YOLOX's own ``predict_by_feat`` (:func:`track_yolox_candidates`).

    Fast path: each level has its own stacked convs (BatchNorm, eval) and
    1x1 outputs, so receptive patches are exact; the patch forward is the
    head's ``forward_single`` with that level's modules.
    """

    family = 'YOLOX'
    relies_on = ('predict_by_feat', '_bbox_decode', '_bbox_post_process',
                 'forward', 'forward_single')

    def track_candidates(self, featmap_sizes: Sequence) -> ContextManager:
        return track_yolox_candidates(self.head, featmap_sizes)

    def grid_priors(self, featmap_sizes: Sequence, dtype: torch.dtype,
                    device: torch.device) -> List[Tensor]:
        # (x, y, stride_w, stride_h): what _bbox_decode reads
        return self.head.prior_generator.grid_priors(
            featmap_sizes, dtype=dtype, device=device, with_stride=True)

    def box_channels(self) -> int:
        return 4

    def decode(self, priors: Tensor, box_vec: Tensor, level: int) -> Tensor:
        return type(self.head)._bbox_decode(self.head, priors, box_vec)

    def forward_level(self, x: Tensor, level: int) -> tuple:
        head = self.head
        return head.forward_single(
            x, head.multi_level_cls_convs[level],
            head.multi_level_reg_convs[level],
            head.multi_level_conv_cls[level],
            head.multi_level_conv_reg[level],
            head.multi_level_conv_obj[level])

    def receptive_radius(self) -> int:
        head = self.head
        towers = [stacked_radius(tower) for tower in
                  (*head.multi_level_cls_convs, *head.multi_level_reg_convs)]
        outputs = [stacked_radius(conv) for conv in
                   (*head.multi_level_conv_cls, *head.multi_level_conv_reg,
                    *head.multi_level_conv_obj)]
        return max(towers) + max(outputs)

    def has_fast_path(self) -> bool:
        return self.feature == 'neck' and is_conv_only(self.head)
