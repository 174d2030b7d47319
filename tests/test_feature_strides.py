"""Maps are placed by each level's nominal stride, read from the model's
definitions, at input sizes where the ratio of tensor sizes is not the
stride: the 5-level R50 FCOS / RetinaNet configs at 160x256 and 800x1216
(P6/P7 have ceil(H / 64), ceil(H / 128) rows) and DETR-R50 at 188x256 and
220x300 (C5 has ceil(H / 32) rows). References: plain autograd on the raw
head outputs, maps placed with hand-written strides."""
import numpy as np
import pytest
import torch
from mmdet.apis import init_detector
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.config import Config

import mmdet_odam  # noqa: F401
from mmdet_odam.apis import explain
from mmdet_odam.apis.explain import preprocess
from mmdet_odam.explainers import ATTRIBUTES, build_adapter
from mmdet_odam.explainers.adapters.strides import (backbone_strides,
                                                    neck_strides)
from heatmap_reference import to_image

FCOS = 'configs/fcos/fcos_r50_fpn_gn-head_1x_coco.py'
RETINA = 'configs/retinanet/retinanet_r50_fpn_1x_coco.py'
FASTER = 'configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
DETR = 'configs/detr/detr_r50_8xb2-150e_coco.py'
# nominal strides, by hand from the architectures
NECK_STRIDES = {FCOS: [8, 16, 32, 64, 128], RETINA: [8, 16, 32, 64, 128],
                FASTER: [4, 8, 16, 32, 64], DETR: [32]}


def _model(config, size, max_per_img, silent_levels=()):
    """Random-weight model whose test pipeline keeps a (h, w) image as is.

    ``silent_levels``: FPN outputs set to zero, so that the top detections
    come from the other (coarse) levels, whose placement is what is tested.
    """
    torch.manual_seed(0)
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.max_per_img = max_per_img
    if 'score_thr' in cfg.model.test_cfg:
        cfg.model.test_cfg.score_thr = 0.0
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (size[1], size[0])
    model = init_detector(cfg, None, device='cpu')
    with torch.no_grad():
        for level in silent_levels:
            model.neck.fpn_convs[level].conv.weight.zero_()
            model.neck.fpn_convs[level].conv.bias.zero_()
    return model.eval()


def _image(size):
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, (*size, 3), dtype=np.uint8)


@pytest.mark.parametrize('config', [FCOS, RETINA, FASTER, DETR])
def test_strides_come_from_the_definitions(config):
    model = init_detector(Config.fromfile(config), None, device='cpu')
    assert backbone_strides(model.backbone) == (
        [32] if config == DETR else [4, 8, 16, 32])
    assert build_adapter(model, 'neck').neck_strides() == \
        NECK_STRIDES[config]
    if config != DETR:  # the FPN's own reading agrees with the priors
        assert neck_strides(model.neck, [4, 8, 16, 32]) == \
            NECK_STRIDES[config if config != FASTER else FASTER]


def test_unsupported_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match='Conv2d.*supported: ResNet'):
        backbone_strides(torch.nn.Conv2d(3, 8, 3))




def _dense_candidates(model, feats, meta, label):
    """Scores (M, ) and outward extents (M, 4) (input pixels, unclamped) of
    every candidate of class ``label``, plus clamped boxes for the search."""
    head = model.bbox_head
    outs = head(feats)
    sizes = [o.shape[-2:] for o in outs[0]]
    priors = head.prior_generator.grid_priors(sizes, device=feats[0].device)
    scores, extents, boxes = [], [], []
    k = head.cls_out_channels
    for lvl in range(len(feats)):
        cls = outs[0][lvl][0].permute(1, 2, 0).reshape(-1, k)[:, label]
        score = cls.sigmoid()
        if len(outs) > 2:  # FCOS centerness
            score = score * outs[2][lvl][0].permute(1, 2, 0).reshape(
                -1).sigmoid()
        reg = outs[1][lvl][0].permute(1, 2, 0).reshape(-1, 4)
        box = head.bbox_coder.decode(priors[lvl], reg)
        scores.append(score)
        extents.append(box * box.new_tensor([-1, -1, 1, 1]))
        h, w = meta['img_shape']
        boxes.append(torch.stack([box[:, 0].clamp(0, w), box[:, 1].clamp(
            0, h), box[:, 2].clamp(0, w), box[:, 3].clamp(0, h)], 1))
    return torch.cat(scores), torch.cat(extents), torch.cat(boxes)


def _detr_candidates(model, feats, samples, label):
    head_in = model.forward_transformer(tuple(feats), samples)
    cls, reg = model.bbox_head(head_in['hidden_states'])
    score = cls[-1][0].softmax(-1)[:, label]
    h, w = samples[0].metainfo['img_shape']
    box = bbox_cxcywh_to_xyxy(reg[-1][0]) * reg.new_tensor([w, h, w, h])
    boxes = torch.stack([box[:, 0].clamp(0, w), box[:, 1].clamp(0, h),
                         box[:, 2].clamp(0, w), box[:, 3].clamp(0, h)], 1)
    return score, box * box.new_tensor([-1, -1, 1, 1]), boxes


def _reference_maps(model, image, det, strides):
    """(5, H, W) maps, one per attribute, of the candidate that has the
    detection's score and box, by autograd on the neck outputs."""
    inputs, samples = preprocess(model, image)
    meta = samples[0].metainfo
    assert tuple(meta['img_shape']) == image.shape[:2]  # not resized
    feats = [f.detach().requires_grad_() for f in model.extract_feat(inputs)]
    label = int(det.labels)
    if hasattr(model.bbox_head, 'prior_generator'):
        scores, extents, boxes = _dense_candidates(model, feats, meta, label)
    else:
        scores, extents, boxes = _detr_candidates(model, feats, samples,
                                                  label)
    hit = ((scores - det.scores).abs() < 1e-6) & (
        (boxes - det.bboxes).abs().amax(1) < 1e-3)
    assert int(hit.sum()) == 1, 'detection not found among candidates'
    index = int(hit.nonzero()[0, 0])
    maps = []
    for y in torch.cat([scores[index, None], extents[index]]):
        grads = torch.autograd.grad(y, feats, retain_graph=True,
                                    allow_unused=True)
        total = torch.zeros(image.shape[:2])
        for feat, grad, stride in zip(feats, grads, strides):
            if grad is not None and grad.any():
                grid = torch.relu((grad[0] * feat[0].detach()).sum(0))
                total += to_image(grid, stride, meta['img_shape'])
        maps.append(total / total.max())
    return torch.stack(maps)


@pytest.mark.parametrize('config, size, max_per_img, silent, level', [
    (FCOS, (160, 256), 1, (0, 1), 3), (RETINA, (160, 256), 2, (0, 1, 2), 3),
    (RETINA, (800, 1216), 1, (0, 1, 2), 4), (DETR, (188, 256), 2, (), 0),
    (DETR, (220, 300), 1, (), 0)
])
def test_maps_are_placed_by_nominal_stride(config, size, max_per_img, silent,
                                           level):
    model = _model(config, size, max_per_img, silent)
    image = _image(size)
    if config != DETR:  # the detections come from the level under test
        with torch.enable_grad():
            state = build_adapter(model, 'neck').forward(
                *preprocess(model, image))
        assert state.results[0].cand_level.tolist() == [level] * max_per_img
    out = explain(model, image, targets=ATTRIBUTES, score_thr=0.0,
                  explainer=dict(type='ODAM', smooth='none', method='exact'))
    pred = out.pred_instances
    assert len(pred) == max_per_img
    for i in range(len(pred)):
        expected = _reference_maps(model, image, pred[i], NECK_STRIDES[config])
        torch.testing.assert_close(pred.heatmaps.render([i])[0], expected,
                                   atol=1e-4,
                                   rtol=0)
