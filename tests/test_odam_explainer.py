"""ODAM on the four detector families, checked against plain autograd.

The reference maps here never use the explainer's candidate tracking: each
detection's source candidate is found by exhaustive search over all raw head
outputs for the one whose score and decoded box equal the detection's, and its
gradient is taken with a separate ``torch.autograd.grad`` call.
"""
import math
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet.apis import init_detector
from mmdet.structures.bbox import bbox2roi, bbox_cxcywh_to_xyxy, scale_boxes
from mmengine.config import Config
from scipy.ndimage import gaussian_filter

import mmdet_odam  # noqa: F401
from mmdet_odam.apis import explain
from mmdet_odam.apis.explain import build_test_pipeline
from mmdet_odam.apis.explain import preprocess
from mmdet_odam.explainers import ODAM, build_adapter

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAINED_FCOS = (osp.join(ROOT, 'configs/fcos/fcos_tiny_synthetic-crowd.py'),
                osp.join(ROOT, 'checkpoints/fcos_tiny_synthetic-crowd.pth'))
DEMO_IMAGE = osp.join(ROOT, 'demo/crowd.png')

CONFIGS = {
    'fcos': 'configs/fcos/fcos_tiny_synthetic-crowd.py',
    'retinanet': 'configs/retinanet/retinanet_tiny_synthetic-crowd.py',
    'faster_rcnn': 'configs/faster_rcnn/faster-rcnn_tiny_synthetic-crowd.py',
    'detr': 'configs/detr/detr_tiny_synthetic-crowd.py',
}


def build_model(family: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = Config.fromfile(CONFIGS[family])
    # few detections keep the exact (one autograd call each) path quick
    test_cfg = cfg.model.test_cfg
    (test_cfg.rcnn if 'rcnn' in test_cfg else test_cfg).max_per_img = 12
    model = init_detector(cfg, None, device='cpu')
    model.dataset_meta = dict(classes=('person', ))
    return model.eval()


@pytest.fixture(scope='module')
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    img[30:80, 40:70] = (200, 40, 40)  # some structure for the detectors
    return img


@pytest.fixture(scope='module')
def models():
    return {family: build_model(family) for family in CONFIGS}



def _find(values: torch.Tensor, boxes: torch.Tensor, score: float,
          box: torch.Tensor) -> int:
    """Index of the unique candidate with this score and box."""
    hit = ((values - score).abs() < 1e-6) & \
        ((boxes - box).abs().amax(dim=1) < 1e-3)
    assert int(hit.sum()) >= 1, 'detection not found among candidates'
    return int(hit.nonzero()[0, 0])


def reference_scalar(family, model, inputs, samples, det, feature='neck'):
    """(leaves, strides, Y) with Y the detection's score via plain autograd.

    The leaves are the neck outputs, or with ``feature='backbone'`` the
    backbone stages (run through the neck to the head).
    """
    meta = samples[0].metainfo
    if feature == 'backbone':
        leaves = [s.detach().requires_grad_() for s in model.backbone(inputs)]
        feats = list(model.neck(tuple(leaves)))
    else:
        feats = leaves = [f.detach().requires_grad_()
                          for f in model.extract_feat(inputs)]
    scale = meta['scale_factor']
    if family in ('fcos', 'retinanet'):
        head = model.bbox_head
        outs = head(feats)
        sizes = [o.shape[-2:] for o in outs[0]]
        priors = head.prior_generator.grid_priors(
            sizes, device=feats[0].device)
        values, boxes = [], []
        for lvl in range(len(feats)):
            cls = outs[0][lvl][0].permute(1, 2, 0).reshape(-1).sigmoid()
            prob = cls
            if family == 'fcos':
                prob = cls * outs[2][lvl][0].permute(1, 2, 0).reshape(
                    -1).sigmoid()
            reg = outs[1][lvl][0].permute(1, 2, 0).reshape(-1, 4)
            decoded = head.bbox_coder.decode(priors[lvl], reg,
                                             max_shape=meta['img_shape'])
            values.append(prob)
            boxes.append(scale_boxes(decoded, [1 / s for s in scale]))
        values, boxes = torch.cat(values), torch.cat(boxes)
    elif family == 'faster_rcnn':
        with torch.no_grad():
            proposals = model.rpn_head.predict(tuple(feats), samples,
                                               rescale=False)
        rois = bbox2roi([proposals[0].bboxes])
        roi_feats = model.roi_head.bbox_roi_extractor(feats, rois)
        cls, reg = model.roi_head.bbox_head(roi_feats)
        values = cls.softmax(-1)[:, 0]
        decoded = model.roi_head.bbox_head.bbox_coder.decode(
            rois[:, 1:], reg, max_shape=meta['img_shape'])
        boxes = scale_boxes(decoded, [1 / s for s in scale])
    else:  # detr
        head_in = model.forward_transformer(tuple(feats), samples)
        cls, reg = model.bbox_head(head_in['hidden_states'])
        values = cls[-1][0].softmax(-1)[:, 0]
        h, w = meta['img_shape']
        boxes = bbox_cxcywh_to_xyxy(reg[-1][0]) * reg.new_tensor(
            [w, h, w, h])
        boxes = boxes.clamp(min=0) / reg.new_tensor(scale).repeat(2)
    index = _find(values.detach(), boxes.detach(), float(det.scores),
                  det.bboxes)
    strides = [round(inputs.shape[-2] / f.shape[-2]) for f in leaves]
    return leaves, strides, values[index]


def reference_map(feats, strides, y, meta, sigma_of_stride=None,
                  retain_graph=False):
    """ReLU(sum_k Phi(dY/dA_k) * A_k), summed over levels and resized to the
    original image, in [0, 1].

    Args:
        sigma_of_stride (callable, optional): Stride -> Gaussian sigma (in
            cells) of Phi on that level, applied by scipy (zero outside the
            map, kernel radius ceil(3 sigma)); None: Phi is the identity.
    """
    grads = torch.autograd.grad(y, feats, allow_unused=True,
                                retain_graph=retain_graph)
    total = torch.zeros(meta['ori_shape'][:2])
    for feat, grad, stride in zip(feats, grads, strides):
        if grad is None or not grad.any():
            continue
        grad = grad[0]
        if sigma_of_stride is not None:
            sigma = sigma_of_stride(stride)
            grad = torch.from_numpy(gaussian_filter(
                grad.double().numpy(), sigma, mode='constant', axes=(1, 2),
                radius=math.ceil(3 * sigma))).float()
        grid = torch.relu((grad * feat[0].detach()).sum(0))
        total += to_image(grid, stride, meta)
    return total / total.max()


def to_image(grid, stride, meta):
    """Cell (i, j) covers pixels [i*s, (i+1)*s); zero heat beyond the grid."""
    img_h, img_w = meta['img_shape']
    up = F.interpolate(F.pad(grid, (1, 1, 1, 1))[None, None],
                       scale_factor=stride, mode='bilinear')
    up = up[..., stride:stride + img_h, stride:stride + img_w]
    return F.interpolate(up, size=meta['ori_shape'][:2], mode='bilinear')[0, 0]


def _dense(value):
    """Tensors as they are, heat maps rendered to the original image."""
    return value.to_tensor() if hasattr(value, 'to_tensor') else value


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1), b.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-12)


@pytest.mark.parametrize('family', list(CONFIGS))
def test_no_smoothing_equals_independent_grad_times_activation(
        family, models, image):
    model = models[family]
    explainer = ODAM(smooth='none', method='exact')
    out = explain(model, image, explainer=explainer, targets=('score', ),
                  score_thr=0.0)
    assert len(out.pred_instances) > 0
    inputs, samples = preprocess(model, image)
    det = out.pred_instances[0]
    feats, strides, y = reference_scalar(family, model, inputs, samples, det)
    expected = reference_map(feats, strides, y, samples[0].metainfo)
    got = out.pred_instances.heatmaps[0, 0]
    assert got.shape == expected.shape == image.shape[:2]
    assert torch.allclose(got, expected, atol=1e-4)


def test_backbone_maps_sum_channels_and_stages_like_autograd(models, image):
    """Backbone stages of 32, 64 and 128 channels all reach a detection; the
    fused map is the sum over stages of ReLU(sum over channels dY/dA * A),
    which a per-stage channel mean would reweight."""
    model = models['retinanet']
    out = explain(model, image, explainer=ODAM(
        feature='backbone', smooth='none', level_fusion='sum'),
        targets=('score', ), score_thr=0.0)
    inputs, samples = preprocess(model, image)
    for k in range(2):
        leaves, strides, y = reference_scalar(
            'retinanet', model, inputs, samples, out.pred_instances[k],
            feature='backbone')
        assert [leaf.shape[1] for leaf in leaves] == [32, 64, 128]
        expected = reference_map(leaves, strides, y, samples[0].metainfo)
        torch.testing.assert_close(out.pred_instances.heatmaps[k, 0],
                                   expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize('family', list(CONFIGS))
def test_explained_candidate_is_the_detection_itself(family, models, image):
    model = models[family]
    inputs, samples = preprocess(model, image)
    adapter = build_adapter(model, 'neck')
    with torch.enable_grad():
        state = adapter.forward(inputs, samples)
        scalars = adapter.candidate_scalars(state, 0)
    res = state.results[0]
    assert len(res) > 0
    # the explained score is exactly the score the detector reported
    assert torch.allclose(scalars[:, 0], res.scores, atol=1e-6)
    # and the explained box extents decode to the reported box
    scale = res.bboxes.new_tensor(samples[0].metainfo['scale_factor'])
    boxes = scalars[:, 1:] * scalars.new_tensor([-1, -1, 1, 1])
    h, w = samples[0].metainfo['img_shape']
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    assert torch.allclose(boxes / scale.repeat(2), res.bboxes, atol=1e-3)


@pytest.mark.parametrize('cell_position', ['receptive_field', 'grid'])
def test_fast_path_equals_exact_without_groupnorm(models, image,
                                                  cell_position):
    model = models['retinanet']  # conv head without GroupNorm: exact
    exact = explain(model, image, explainer=ODAM(
        method='exact', cell_position=cell_position), score_thr=0.0)
    fast = explain(model, image, explainer=ODAM(
        method='fast', cell_position=cell_position), score_thr=0.0)
    assert len(fast.pred_instances) == len(exact.pred_instances) > 5
    assert torch.allclose(fast.pred_instances.heatmaps.to_tensor(),
                          exact.pred_instances.heatmaps.to_tensor(), atol=1e-4)


@pytest.mark.parametrize('cell_position', ['receptive_field', 'grid'])
def test_fast_path_equals_exact_on_an_unresized_padded_input(models, image,
                                                            cell_position):
    """A 60 x 256 image is not resized by the (256, 256) keep-ratio test
    pipeline (ori_shape == img_shape), so the fast path pastes upsampled
    windows straight into the image; the batch is padded to 64 rows, so the
    exact path's maps are cropped to img_shape."""
    model = models['retinanet']
    unresized = np.concatenate([image[:60], image[:60, ::-1]], axis=1)
    maps = {}
    for method in ('exact', 'fast'):
        out = explain(model, unresized, explainer=ODAM(
            method=method, cell_position=cell_position), score_thr=0.0)
        assert out.metainfo['img_shape'] == out.metainfo['ori_shape'] == \
            (60, 256) != out.metainfo['batch_input_shape']
        maps[method] = out.pred_instances.heatmaps.to_tensor()
    assert len(maps['fast']) == len(maps['exact']) > 5
    torch.testing.assert_close(maps['fast'], maps['exact'], atol=1e-4,
                               rtol=0)


def test_fast_path_close_to_exact_with_groupnorm(models, image):
    model = models['fcos']  # GroupNorm statistics are frozen in the fast path
    targets = ('score', 'x2')
    exact = explain(model, image, explainer=ODAM(method='exact'),
                    targets=targets, score_thr=0.0)
    fast = explain(model, image, explainer=ODAM(method='fast'),
                   targets=targets, score_thr=0.0)
    corr = _pearson(fast.pred_instances.heatmaps.to_tensor().flatten(0, 1),
                    exact.pred_instances.heatmaps.to_tensor().flatten(0, 1))
    assert corr.mean() > 0.95


def test_grad_modes_are_views_of_one_signed_map(models, image):
    model = models['fcos']
    maps = {
        mode: explain(model, image, explainer=ODAM(grad_mode=mode),
                      targets=('x1', ), score_thr=0.0)
        .pred_instances.heatmaps[:8, 0]
        for mode in ('pos', 'pos_relu', 'neg_relu', 'abs')
    }
    signed = maps['pos']  # the signed sum, scaled by its peak magnitude
    assert signed.min() < 0 < signed.max()
    assert signed.abs().flatten(1).amax(1).allclose(torch.ones(8))
    for mode in ('pos_relu', 'neg_relu', 'abs'):
        assert maps[mode].min() >= 0 and maps[mode].max() <= 1
    # ReLU/abs act on the feature grid before resampling, so compare shapes
    assert _pearson(maps['pos_relu'], signed.clamp(min=0)).min() > 0.9
    assert _pearson(maps['neg_relu'], (-signed).clamp(min=0)).min() > 0.9
    assert _pearson(maps['abs'], signed.abs()).min() > 0.9
    assert _pearson(maps['pos_relu'], maps['neg_relu']).mean() < 0.5


def test_combined_is_elementwise_max_of_attribute_maps(models, image):
    out = explain(models['fcos'], image, score_thr=0.0)
    maps = out.pred_instances.heatmaps.to_tensor()
    assert out.metainfo['targets'] == ('score', 'x1', 'y1', 'x2', 'y2',
                                       'combined')
    assert torch.equal(maps[:, 5], maps[:, :5].amax(dim=1))
    assert maps.min() >= 0 and maps.max() <= 1


def test_global_smoothing_gives_gradcam_maps(models, image):
    model = models['retinanet']
    gradcam = explain(model, image, explainer=ODAM(smooth='global',
                                                   method='exact'),
                      targets=('score', ), score_thr=0.0)
    inputs, samples = preprocess(model, image)
    det = gradcam.pred_instances[0]
    feats, strides, y = reference_scalar('retinanet', model, inputs,
                                         samples, det)
    grads = torch.autograd.grad(y, feats)
    meta = samples[0].metainfo
    total = torch.zeros(meta['ori_shape'][:2])
    for feat, grad, stride in zip(feats, grads, strides):
        if not grad.any():
            continue
        weights = grad[0].mean(dim=(1, 2))  # Grad-CAM: pooled gradients
        grid = torch.relu(torch.einsum('c,chw->hw', weights, feat[0]))
        total += to_image(grid, stride, meta)
    assert torch.allclose(gradcam.pred_instances.heatmaps[0, 0],
                          total / total.max(), atol=1e-4)


def test_adaptive_sigma_is_sized_in_input_pixels_on_an_upscaled_image():
    """The trained FCOS on a half-size demo crop (120 x 128, upscaled 2x to a
    240 x 256 input padded to 256 rows): with sigma_scale 0.5 the Gaussian
    leaves the min_sigma floor, and each map equals an autograd reference
    smoothed by scipy with sigma = 0.5 * sqrt(w * h) / stride from the box in
    INPUT pixels (twice the original-image box)."""
    model = init_detector(*TRAINED_FCOS, device='cpu').eval()
    small = mmcv.imresize(mmcv.imread(DEMO_IMAGE)[:240], (128, 120))
    sigma_scale, min_sigma, upscale = 0.5, 0.5, 2.0
    out = explain(model, small, explainer=ODAM(
        method='exact', sigma_scale=sigma_scale, min_sigma=min_sigma),
        targets=('score', ), score_thr=0.4)
    dets = out.pred_instances
    assert len(dets) >= 2
    inputs, samples = preprocess(model, small)
    meta = samples[0].metainfo
    assert meta['scale_factor'] == (upscale, upscale)
    assert meta['img_shape'] == (240, 256) != tuple(inputs.shape[-2:])
    for k in range(len(dets)):
        width, height = ((dets.bboxes[k, 2:] - dets.bboxes[k, :2]) *
                         upscale).tolist()
        side = math.sqrt(width * height)

        def sigma_of_stride(stride, side=side):
            return max(min_sigma, sigma_scale * side / stride)

        feats, strides, y = reference_scalar('fcos', model, inputs, samples,
                                             dets[k])
        grads = torch.autograd.grad(y, feats, retain_graph=True)
        level = [g.abs().sum() > 0 for g in grads].index(True)
        assert sigma_of_stride(strides[level]) > 2 * min_sigma  # no floor
        expected = reference_map(feats, strides, y, meta, sigma_of_stride)
        # the explainer truncates all kernels of a level at the radius of its
        # largest sigma (>= 3 sigma here): differences stay below 1e-3, while
        # sigma from original-image pixels (half as large) is off by 0.3-0.5
        torch.testing.assert_close(dets.heatmaps[k, 0], expected, atol=1e-3,
                                   rtol=0)


def test_bad_input_is_reported_clearly(models, image):
    model = models['fcos']
    with pytest.raises(ValueError, match="feature 'roi' does not exist"):
        explain(model, image, explainer=dict(type='ODAM', feature='roi'))
    with pytest.raises(ValueError, match='unknown targets'):
        explain(model, image, targets=('score', 'width'))
    with pytest.raises(FileNotFoundError, match='image not found'):
        explain(model, '/nonexistent/image.png')
    with pytest.raises(ValueError, match='grad_mode'):
        ODAM(grad_mode='up')


def test_no_detection_gives_an_empty_result(models, image):
    out = explain(models['fcos'], image, score_thr=1.1)
    assert out.pred_instances.heatmaps.shape == (0, 6) + image.shape[:2]
    assert len(out.pred_instances.bboxes) == 0


def test_batch_of_images_returns_a_list(models, image):
    model = models['fcos']
    images = [image, image[:64]]
    outs = explain(model, images, targets=('score', ), score_thr=0.2)
    assert isinstance(outs, list) and len(outs) == 2
    assert outs[1].pred_instances.heatmaps.shape[-2:] == (64, 128)
    # each result is that image explained on its own
    for img, out in zip(images, outs):
        alone = explain(model, img, targets=('score', ), score_thr=0.2)
        assert len(alone.pred_instances) > 0
        for key in ('bboxes', 'scores', 'heatmaps'):
            assert torch.equal(_dense(out.pred_instances.get(key)),
                               _dense(alone.pred_instances.get(key))), key


def test_every_image_of_a_collated_batch_is_explained_as_its_own(models,
                                                                 image):
    """A preprocessed batch of two copies of one image: the second copy's
    detections and maps (fast path, image index 1) equal the first's."""
    model = models['fcos']
    data = build_test_pipeline(model, image)(dict(img=image, img_id=0))
    batch = model.data_preprocessor(
        dict(inputs=[data['inputs']] * 2,
             data_samples=[data['data_samples']] * 2), False)
    first, second = ODAM().explain_batch(model, batch['inputs'],
                                         batch['data_samples'],
                                         targets=('score', 'x2'),
                                         score_thr=0.2)
    assert len(first.pred_instances) > 0
    for key in ('bboxes', 'scores', 'heatmaps'):
        torch.testing.assert_close(_dense(second.pred_instances.get(key)),
                                   _dense(first.pred_instances.get(key)),
                                   atol=1e-5, rtol=1e-5)


def test_roi_features_explain_faster_rcnn_inside_the_roi(models, image):
    out = explain(models['faster_rcnn'], image,
                  explainer=dict(type='ODAM', feature='roi', smooth='none'),
                  targets=('score', 'combined'), score_thr=0.0)
    maps = out.pred_instances.heatmaps.to_tensor()
    assert len(maps) > 0
    for det, det_maps in zip(out.pred_instances.bboxes, maps):
        x1, y1, x2, y2 = det.tolist()
        outside = det_maps.clone()
        outside[:, max(int(y1) - 1, 0):int(y2) + 2,
                max(int(x1) - 1, 0):int(x2) + 2] = 0
        assert outside.abs().max() < 1e-6  # RoI maps live in their box


def test_recorded_group_norm_statistics_match_their_definition():
    from mmdet_odam.explainers.adapters.receptive_field import \
        group_norm_stats
    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 6) * 3 + 1
    x[1, :4] = 2.5  # a constant group: variance exactly zero
    mean, var = group_norm_stats(x, num_groups=2)
    grouped = x.reshape(2, 2, -1)
    torch.testing.assert_close(mean, grouped.mean(-1))
    torch.testing.assert_close(var, grouped.var(-1, unbiased=False))
    assert var[1, 0] == 0


@pytest.mark.parametrize('config,named', [
    ('mmdet::sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.py',
     'SparseRCNN with SparseRoIHead'),
    ('mmdet::grid_rcnn/grid-rcnn_r50_fpn_gn-head_2x_coco.py',
     'GridRCNN with GridRoIHead'),
    ('mmdet::tood/tood_r50_fpn_1x_coco.py', 'TOOD with TOODHead')])
def test_unsupported_family_is_one_line_naming_the_supported(config, named,
                                                             models):
    """Detectors whose post-processing the adapters cannot tag are refused
    when the adapter is built, not by an internal error while explaining."""
    from mmdet.registry import MODELS
    from mmengine.utils import get_installed_path
    root = get_installed_path('mmdet') + '/.mim/configs/'
    cfg = Config.fromfile(config.replace('mmdet::', root))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)  # random weights
    with pytest.raises(TypeError) as error:
        build_adapter(model, 'neck')
    message = str(error.value)
    assert '\n' not in message and f'no ODAM adapter for {named}' in message
    for family in ('FCOS', 'RetinaNet', 'Faster', 'DETR'):
        assert family in message
    for family in CONFIGS:  # the supported ones still resolve
        build_adapter(models[family], 'neck')


def test_exact_gradients_are_windows_of_their_support(models, image):
    """The exact path keeps each pair's gradient as the window of its
    non-zero cells (not a full map), and the window pasted back is the full
    autograd gradient."""
    from mmdet_odam.explainers.odam import paste_windows_nchw
    model = models['retinanet']
    inputs, samples = preprocess(model, image)
    adapter = build_adapter(model, 'neck')
    with torch.enable_grad():
        state = adapter.forward(inputs, samples)
        scalars = adapter.candidate_scalars(state, 0)
        pieces = adapter.exact_gradients(state, 0, [0, 1, 2], [0, 3])
    assert pieces
    for piece in pieces:
        feat = state.activations[piece.level]
        assert piece.grads.shape[-2:] != feat.shape[-2:] or \
            bool(piece.offsets.any())
        full = paste_windows_nchw(piece.grads, piece.offsets,
                                  feat.shape[-2:])
        for row, pair in enumerate(piece.pair_index.tolist()):
            det, attr = divmod(pair, 5)
            expected, = torch.autograd.grad(scalars[det, attr], [feat],
                                            retain_graph=True)
            torch.testing.assert_close(full[row], expected[0])
