"""Faster R-CNN's batched exact path on FPN levels (RoIAlign's adjoint).

One backward through the box head gives every (detection, attribute) pair's
gradient on the pooled RoI features; RoIAlign's adjoint on a local window of
the RoI's level carries it to the level. Checked against the exact path (one
autograd call per pair through the whole graph) and against an independent
autograd reference that finds each detection's proposal by exhaustive search
over all proposals and classes, on the tiny Faster R-CNN and on the R50 COCO
config at 160x256 (not resized), with maps placed by hand-written strides.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmcv.ops import RoIAlign
from mmdet.apis import init_detector
from mmdet.structures.bbox import bbox2roi
from mmengine.config import Config

import mmdet_odam  # noqa: F401
from mmdet_odam.apis import explain
from mmdet_odam.apis.explain import preprocess
from mmdet_odam.explainers import ATTRIBUTES, ODAM, build_adapter
from mmdet_odam.explainers.adapters.two_stage import (roi_align_adjoint,
                                                      roi_windows)
from mmdet_odam.explainers.odam import TARGETS, paste_windows_nchw

TINY = 'configs/faster_rcnn/faster-rcnn_tiny_synthetic-crowd.py'
R50 = 'configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
# nominal strides of the neck outputs, by hand from the architectures
STRIDES = {TINY: [8, 16, 32], R50: [4, 8, 16, 32, 64]}


def _model(config, max_per_img, size=None):
    """Random-weight Faster R-CNN keeping its top ``max_per_img`` boxes;
    ``size`` (h, w): the test pipeline keeps such an image as is."""
    torch.manual_seed(0)
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.rcnn.max_per_img = max_per_img
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    # fewer proposals: the RoI head on 1000 of them is most of the R50 time
    cfg.model.test_cfg.rpn.max_per_img = 200
    if size is not None:
        for step in cfg.test_dataloader.dataset.pipeline:
            if step.type == 'Resize':
                step.scale = (size[1], size[0])
    model = init_detector(cfg, None, device='cpu')
    return model.eval()


def _image(size, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    h, w = size
    img[h // 3:h * 5 // 6, w // 3:w // 2] = (200, 40, 40)  # some structure
    return img


@pytest.fixture(scope='module')
def tiny():
    # 96x128 is resized to 192x256 (maps are resized back to the original)
    return _model(TINY, 12), _image((96, 128))


@pytest.fixture(scope='module')
def r50():
    size = (160, 256)  # not resized: windows are pasted into the image
    return _model(R50, 4, size), _image(size, seed=1)



def _to_image(grid, stride, meta):
    """Cell (i, j) covers pixels [i*s, (i+1)*s), bilinear between cell
    centres, zero heat beyond the grid; cropped to the unpadded input and
    resized to the original image."""
    img_h, img_w = meta['img_shape']
    up = F.interpolate(F.pad(grid, (1, 1, 1, 1))[None, None],
                       scale_factor=stride, mode='bilinear')
    up = up[..., stride:stride + img_h, stride:stride + img_w]
    return F.interpolate(up, size=meta['ori_shape'][:2], mode='bilinear')[0, 0]


def _reference_maps(model, image, dets, strides):
    """(N, 5, H_ori, W_ori) maps of detections by plain autograd on the neck.

    Each detection's proposal is the unique one whose class probability and
    decoded (clamped, rescaled) box equal the detection's; its five scalars
    (softmax probability, outward box extents) are differentiated w.r.t. the
    full neck outputs through the model's own extractor and box head."""
    inputs, samples = preprocess(model, image)
    meta = samples[0].metainfo
    roi_head = model.roi_head
    extractor, head = roi_head.bbox_roi_extractor, roi_head.bbox_head
    feats = [f.detach().requires_grad_() for f in model.extract_feat(inputs)]
    scale = torch.tensor(meta['scale_factor']).repeat(2)
    with torch.no_grad():
        proposals = model.rpn_head.predict(tuple(feats), samples,
                                           rescale=False)
        rois = bbox2roi([proposals[0].bboxes])
        cls, reg = head(extractor(feats[:extractor.num_inputs], rois))
    out = []
    for det in dets:
        label = int(det.labels)
        boxes = head.bbox_coder.decode(
            rois[:, 1:], reg.view(len(rois), -1, 4)[:, label],
            max_shape=meta['img_shape']) / scale
        hit = ((cls.softmax(-1)[:, label] - det.scores).abs() < 1e-6) & (
            (boxes - det.bboxes).abs().amax(1) < 1e-3)
        assert int(hit.sum()) == 1, 'detection not found among proposals'
        roi = rois[hit]
        logits, deltas = head(extractor(feats[:extractor.num_inputs], roi))
        box = head.bbox_coder.decode(
            roi[:, 1:], deltas.view(1, -1, 4)[:, label])[0]
        maps = []
        for y in (logits.softmax(-1)[0, label], -box[0], -box[1], box[2],
                  box[3]):
            grads = torch.autograd.grad(y, feats, retain_graph=True,
                                        allow_unused=True)
            total = torch.zeros(meta['ori_shape'][:2])
            for feat, grad, stride in zip(feats, grads, strides):
                if grad is not None and grad.any():
                    grid = torch.relu((grad[0] * feat[0].detach()).sum(0))
                    total += _to_image(grid, stride, meta)
            maps.append(total / total.max() if total.max() > 0 else total)
        out.append(torch.stack(maps))
    return torch.stack(out)


def _maps(model, image, **kwargs):
    out = explain(model, image, explainer=ODAM(**kwargs), targets=TARGETS,
                  score_thr=0.0)
    return out.pred_instances


@pytest.mark.parametrize('case', ['tiny', 'r50'])
def test_batched_maps_equal_exact_and_autograd(case, request):
    """Every attribute and 'combined', smooth 'none' and 'adaptive':
    method='fast' equals method='exact'; smooth='none' equals the
    independent autograd reference."""
    model, image = request.getfixturevalue(case)
    config = TINY if case == 'tiny' else R50
    for smooth in ('none', 'adaptive'):
        fast = _maps(model, image, method='fast', smooth=smooth)
        exact = _maps(model, image, method='exact', smooth=smooth)
        assert len(fast) == len(exact) == (12 if case == 'tiny' else 4)
        assert torch.equal(fast.bboxes, exact.bboxes)
        fast_maps = fast.heatmaps.to_tensor()
        assert fast_maps.amax(dim=(2, 3)).gt(0).all()
        torch.testing.assert_close(fast_maps, exact.heatmaps.to_tensor(),
                                   atol=1e-5, rtol=0)
        if smooth == 'none':
            expected = _reference_maps(model, image, fast, STRIDES[config])
            torch.testing.assert_close(fast_maps[:, :5], expected,
                                       atol=1e-5, rtol=0)


# Hand-set RoIs (input pixels) replacing the first detections' RoIs, so that
# every RoI level and the input's borders are exercised (random-weight
# detections are all small): tiny, 192x256 input, finest_scale 32 (< 64 / 128
# / >= 128 px on strides 8 / 16 / 32); R50, 160x256, finest_scale 56 (< 112 /
# < 224 px on strides 4 / 8).
HAND_ROIS = {
    'tiny': [[0., 0., 256., 192.], [50.3, 40.7, 150.2, 139.9],
             [201.5, 150.2, 256., 192.], [100.1, 0., 250.6, 191.3]],
    'r50': [[0., 0., 256., 160.], [200.2, 101.7, 256., 160.]],
}


@pytest.mark.parametrize('case', ['tiny', 'r50'])
def test_pair_gradients_are_local_windows_of_the_exact_ones(case, request):
    """The fast path's gradients are windows at most 8 cells wider than
    their RoI (the detected ones: smaller than their level map), on the
    level the extractor pools each RoI from; pasted on the map they equal
    the exact path's full-size gradients (zero elsewhere)."""
    model, image = request.getfixturevalue(case)
    adapter = build_adapter(model, 'neck')
    assert adapter.has_fast_path() and adapter.fast_path_is_exact()
    assert ODAM().uses_fast_path(adapter)  # the default takes it
    assert not ODAM(method='exact').uses_fast_path(adapter)
    assert not build_adapter(model, 'backbone').has_fast_path()
    inputs, samples = preprocess(model, image)
    extractor = model.roi_head.bbox_roi_extractor
    with torch.enable_grad():
        state = adapter.forward(inputs, samples)
        rois = state.extras['det_rois'][0]
        num_hand = len(HAND_ROIS[case])
        assert len(rois) > num_hand
        rois[:num_hand, 1:] = torch.tensor(HAND_ROIS[case])
        dets = list(range(len(rois)))
        attrs = list(range(len(ATTRIBUTES)))
        fast = adapter.fast_gradients(state, 0, dets, attrs)
        exact = adapter.exact_gradients(state, 0, dets, attrs)
    expected_levels = extractor.map_roi_levels(rois, extractor.num_inputs)
    assert set(expected_levels.tolist()) == set(
        range(extractor.num_inputs if case == 'tiny' else 2))
    reference = {}
    for piece in exact:  # the exact path keeps windows too: paste them
        grads = paste_windows_nchw(piece.grads, piece.offsets,
                                   state.activations[piece.level].shape[-2:])
        for grad, pair in zip(grads, piece.pair_index.tolist()):
            reference[pair] = (piece.level, grad)
    covered = set()
    for piece in fast:
        level_map = state.activations[piece.level]
        window = torch.tensor(piece.grads.shape[-2:])
        det_of = piece.pair_index // len(ATTRIBUTES)
        if (det_of >= num_hand).any():  # detected RoIs are all small
            assert window.prod() < torch.tensor(level_map.shape[-2:]).prod()
        stride = extractor.featmap_strides[piece.level]
        boxes = rois[det_of, 1:]
        sides = (boxes[:, 2:] - boxes[:, :2]).flip(1) / stride  # (h, w)
        assert (window <= sides + 8).all()
        full = paste_windows_nchw(piece.grads, piece.offsets,
                                  level_map.shape[-2:])
        for grad, pair in zip(full, piece.pair_index.tolist()):
            assert int(expected_levels[pair // len(ATTRIBUTES)]) == \
                piece.level
            level, ref = reference[pair]
            assert level == piece.level
            torch.testing.assert_close(grad, ref, rtol=0,
                                       atol=1e-5 * float(ref.abs().max()))
            covered.add(pair)
    assert covered == set(reference) == {
        d * len(ATTRIBUTES) + a for d in dets for a in attrs}


@pytest.mark.parametrize('aligned, sampling_ratio', [(True, 0), (True, 2),
                                                      (False, 0)])
@pytest.mark.parametrize('stride', [4, 16])
def test_roi_align_adjoint_on_windows_equals_the_full_map(aligned,
                                                           sampling_ratio,
                                                           stride):
    """RoIs inside, on the borders of, partly and wholly outside a 9x13
    map, and smaller than a cell: the window adjoint applied to random
    pooled gradients equals RoIAlign's autograd on the full map."""
    torch.manual_seed(0)
    layer = RoIAlign(7, spatial_scale=1 / stride,
                     sampling_ratio=sampling_ratio, aligned=aligned)
    height, width = 9, 13
    cells = torch.tensor([
        [2.3, 1.7, 6.2, 5.9], [0.0, 0.0, 13.0, 9.0], [-1.4, -0.8, 3.1, 2.2],
        [10.6, 6.3, 14.5, 10.2], [4.1, 3.9, 4.4, 4.2], [11.9, 0.2, 12.8, 8.9],
        [-3.0, 2.0, -1.7, 4.0], [5.5, 7.8, 9.5, 12.0]])
    rois = torch.cat([torch.zeros(len(cells), 1), cells * stride], dim=1)
    channels = 3
    grad_out = torch.randn(len(rois), channels, 7, 7)
    offsets, sizes = roi_windows(rois, layer, (height, width))
    assert (offsets >= 0).all() and (offsets + sizes <= torch.tensor(
        [height, width])).all()
    for m in range(len(rois)):
        feat = torch.zeros(1, channels, height, width, requires_grad=True)
        expected, = torch.autograd.grad(layer(feat, rois[m:m + 1]), feat,
                                        grad_out[m:m + 1])
        size = sizes[m].tolist()
        adjoint = roi_align_adjoint(layer, rois[m:m + 1], offsets[m:m + 1],
                                    size)
        window = torch.einsum('cp,pq->cq', grad_out[m].flatten(1),
                              adjoint[0].flatten(1)).view(1, channels, *size)
        got = paste_windows_nchw(window, offsets[m:m + 1], (height, width))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_window_adjoint_is_closer_to_float64_than_the_full_map_path():
    """At the coordinates of an 800x1216 input (P2: 200x304 cells) float32
    rounds RoIAlign's sample positions to ~3e-5 cells, so the full-map
    gradient (the exact path) and the window adjoint (RoIs moved near the
    window's origin: finer rounding) differ by ~1e-5 relative; the window
    is the closer of the two to RoIAlign in float64."""
    torch.manual_seed(0)
    layer = RoIAlign(7, spatial_scale=1 / 4, sampling_ratio=0)
    height, width = 200, 304
    rois = torch.tensor([[0., 1100.37, 700.91, 1180.13, 760.55],
                         [0., 613.3, 401.7, 690.1, 499.9]])
    grad_out = torch.randn(len(rois), 3, 7, 7)
    offsets, sizes = roi_windows(rois, layer, (height, width))
    for m in range(len(rois)):
        full = {}
        for dtype in (torch.float32, torch.float64):
            feat = torch.zeros(1, 3, height, width, dtype=dtype,
                               requires_grad=True)
            full[dtype], = torch.autograd.grad(
                layer(feat, rois[m:m + 1].to(dtype)), feat,
                grad_out[m:m + 1].to(dtype))
        size = sizes[m].tolist()
        adjoint = roi_align_adjoint(layer, rois[m:m + 1], offsets[m:m + 1],
                                    size)
        window = torch.einsum('cp,pq->cq', grad_out[m].flatten(1),
                              adjoint[0].flatten(1)).view(1, 3, *size)
        got = paste_windows_nchw(window, offsets[m:m + 1], (height, width))
        truth = full[torch.float64]
        scale = float(truth.abs().max())
        window_error = float((got.double() - truth).abs().max()) / scale
        full_error = float((full[torch.float32].double() - truth).abs()
                           .max()) / scale
        assert window_error < 3e-6 and window_error < full_error / 3
