"""ODAM on ATSS, GFL, RTMDet and YOLOX, checked against MMDetection and
plain autograd.

Models are MMDetection's COCO configs (configs/{atss,gfl,rtmdet,yolox}/)
shrunk to a tiny trunk and head with random weights. Independent truth:

* the detections are those of the model's own ``predict`` (MMDetection);
* each detection's source candidate is found by exhaustive search over every
  raw head output for the one whose score and box equal the detection's,
  with the score and box recomputed here by each family's published formula
  (not by the adapters), and its gradient w.r.t. the neck maps is a separate
  ``torch.autograd.grad`` call.
"""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmcv.cnn import Scale
from mmcv.ops import batched_nms
from mmdet.apis import init_detector
from mmdet.structures.bbox import scale_boxes
from mmengine.config import Config

import mmdet_odam  # noqa: F401
from mmdet_odam.apis import explain
from mmdet_odam.apis.explain import preprocess
from mmdet_odam.explainers import ODAM, build_adapter
from mmdet_odam.explainers.odam import paste_windows_nchw

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = {
    'atss': 'configs/atss/atss_r50_fpn_1x_coco.py',
    'gfl': 'configs/gfl/gfl_r50_fpn_1x_coco.py',
    'rtmdet': 'configs/rtmdet/rtmdet_s_8xb32-300e_coco.py',
    'yolox': 'configs/yolox/yolox_s_8xb8-300e_coco.py',
}
FAMILIES = list(CONFIGS)
NUM_DETS = 4


def tiny_config(family: str, norm: str = 'default') -> Config:
    """The family's COCO config with the tiny trunk (ResNet-18 layout, 16
    base channels; 64-channel FPN, strides 8/16/32) and a one-conv, 32-channel
    head for one class; ``norm='BN'`` gives the head batch norm (exact fast
    path) instead of its default."""
    shared = family == 'rtmdet_shared'  # RTMDetHead: one tower, all levels
    family = 'rtmdet' if shared else family
    cfg = Config.fromfile(osp.join(ROOT, CONFIGS[family]))
    trunk = Config.fromfile(osp.join(ROOT,
                                     'configs/_base_/models/tiny_trunk.py'))
    # normalised inputs (YOLOX's and RTMDet's own feed 0-255 values)
    cfg.model.data_preprocessor = dict(type='DetDataPreprocessor',
                                       **trunk.tiny_data_preprocessor)
    cfg.model.backbone = trunk.tiny_backbone
    cfg.model.neck = trunk.tiny_neck
    cfg.model.backbone.pop('_delete_')
    cfg.model.neck.pop('_delete_')
    head = cfg.model.bbox_head
    head.update(num_classes=1, in_channels=64, feat_channels=32,
                stacked_convs=1)
    if shared:
        head.type = 'RTMDetHead'
        for key in ('share_conv', 'exp_on_reg'):
            head.pop(key)
    if family == 'yolox':
        head.strides = (8, 16, 32)
    elif 'anchor_generator' in head:
        head.anchor_generator.strides = [8, 16, 32]
    else:
        head.prior_generator.strides = [8, 16, 32]
    if norm == 'BN':
        head.norm_cfg = dict(type='BN', requires_grad=True)
    elif 'norm_cfg' in head and head.norm_cfg.type == 'GN':
        head.norm_cfg.num_groups = 8
    elif 'norm_cfg' in head:  # SyncBN of the COCO configs
        head.norm_cfg.type = 'BN'
    cfg.model.test_cfg = dict(
        nms_pre=300, min_bbox_size=0, score_thr=0.0,
        # YOLOX has no max_per_img: batched_nms keeps max_num
        nms=dict(type='nms', iou_threshold=0.6, max_num=NUM_DETS),
        max_per_img=NUM_DETS)
    return cfg


def build_model(family: str, norm: str = 'default', seed: int = 0):
    torch.manual_seed(seed)
    model = init_detector(tiny_config(family, norm), None, device='cpu')
    model.dataset_meta = dict(classes=('person', ))
    # random BatchNorm statistics and per-level scales, so the fast path
    # must take each level's own
    for module in model.bbox_head.modules():
        if isinstance(module, Scale):
            module.scale.data.uniform_(0.5, 1.5)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope='module')
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (128, 160, 3), dtype=np.uint8)
    img[30:100, 50:90] = (200, 40, 40)  # some structure for the detectors
    return img


@pytest.fixture(scope='module')
def models():
    # BatchNorm heads: the batched path is exact for every family
    return {family: build_model(family, norm='BN') for family in FAMILIES}


@pytest.fixture(scope='module')
def runs(models, image):
    """Per family, computed once: (adapter, state, reference leaves,
    MMDetection's detections, reference scalars)."""
    out = {}
    for family, model in models.items():
        inputs, samples = preprocess(model, image)
        adapter = build_adapter(model, 'neck')
        with torch.enable_grad():
            state = adapter.forward(inputs, samples)
            out[family] = (adapter, state) + reference_scalars(
                family, model, inputs, samples)
    return out


# -- independent reference: each family's formula, by exhaustive search --------
def all_candidates(family: str, model, feats):
    """Score and box (input pixels, unclamped) of every (prior, class 0) of
    one image, from the head's raw outputs, concatenated over levels."""
    head = model.bbox_head
    outs = head(feats)
    sizes = [o.shape[-2:] for o in outs[0]]
    scores, boxes = [], []
    for lvl, (h, w) in enumerate(sizes):
        stride = [8, 16, 32][lvl]
        cls = outs[0][lvl][0].permute(1, 2, 0).reshape(-1)
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w),
                                indexing='ij')
        # priors (points, anchor centres) at the cell's top-left (offset 0)
        px, py = xs.reshape(-1) * stride, ys.reshape(-1) * stride
        if family == 'atss':  # one square anchor (8 x stride) per cell
            cx, cy = px, py
            size = 8. * stride
            d = outs[1][lvl][0].permute(1, 2, 0).reshape(-1, 4) * \
                torch.tensor([.1, .1, .2, .2])
            cx, cy = cx + d[:, 0] * size, cy + d[:, 1] * size
            bw, bh = size * d[:, 2].exp(), size * d[:, 3].exp()
            box = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2,
                               cy + bh / 2], 1)
            score = cls.sigmoid() * outs[2][lvl][0].reshape(-1).sigmoid()
        elif family == 'gfl':  # expectation of each side's distribution
            logits = outs[1][lvl][0].permute(1, 2, 0).reshape(-1, 4, 17)
            dist = (logits.softmax(-1) * torch.arange(17.)).sum(-1) * stride
            cx, cy = px, py
            box = torch.stack([cx - dist[:, 0], cy - dist[:, 1],
                               cx + dist[:, 2], cy + dist[:, 3]], 1)
            score = cls.sigmoid()
        elif family == 'rtmdet':  # distances, already times the stride
            dist = outs[1][lvl][0].permute(1, 2, 0).reshape(-1, 4)
            box = torch.stack([px - dist[:, 0], py - dist[:, 1],
                               px + dist[:, 2], py + dist[:, 3]], 1)
            score = cls.sigmoid()
        else:  # yolox: centre offset and log size in strides
            reg = outs[1][lvl][0].permute(1, 2, 0).reshape(-1, 4)
            cx, cy = px + reg[:, 0] * stride, py + reg[:, 1] * stride
            bw, bh = reg[:, 2].exp() * stride, reg[:, 3].exp() * stride
            box = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2,
                               cy + bh / 2], 1)
            score = cls.sigmoid() * outs[2][lvl][0].reshape(-1).sigmoid()
        scores.append(score)
        boxes.append(box)
    return torch.cat(scores), torch.cat(boxes)


def reference_scalars(family, model, inputs, samples):
    """(leaves, Y) with Y (N, 5) the detections' [score, -x1, -y1, x2, y2]
    in input pixels, by exhaustive search and plain autograd."""
    meta = samples[0].metainfo
    with torch.no_grad():
        feats = model.extract_feat(inputs)
        dets = model.bbox_head.predict(feats, samples, rescale=True)[0]
    leaves = [f.detach().requires_grad_() for f in feats]
    scores, boxes = all_candidates(family, model, leaves)
    h, w = meta['img_shape']
    clamped = boxes if family == 'yolox' else torch.stack(  # YOLOX: never
        [boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
         boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], 1)
    rescaled = scale_boxes(clamped.detach(),
                           [1 / s for s in meta['scale_factor']])
    rows = []
    for score, box in zip(dets.scores, dets.bboxes):
        hit = ((scores.detach() - score).abs() < 1e-6) & \
            ((rescaled - box).abs().amax(dim=1) < 1e-3)
        assert bool(hit.any()), 'detection not found among candidates'
        k = int(hit.nonzero()[0, 0])
        rows.append(torch.cat([scores[k, None],
                               boxes[k] * torch.tensor([-1., -1., 1., 1.])]))
    return leaves, dets, torch.stack(rows)


def pasted(pieces, state):
    """{(det, attr): {level: full-map gradient (C, H, W)}}."""
    out = {}
    for piece in pieces:
        feat = state.activations[piece.level]
        full = paste_windows_nchw(piece.grads, piece.offsets,
                                  feat.shape[-2:])
        for row, pair in enumerate(piece.pair_index.tolist()):
            out.setdefault(divmod(pair, 5), {})[piece.level] = full[row]
    return out


# -- tests ----------------------------------------------------------------------
@pytest.mark.parametrize('family', FAMILIES)
def test_explained_candidates_are_the_models_own_detections(family, runs):
    """Detections equal MMDetection's predict; each explained scalar row is
    that detection's score and (unclamped) box, found independently."""
    adapter, state, _, dets, expected = runs[family]
    with torch.enable_grad():
        scalars = adapter.candidate_scalars(state, 0)
    res = state.results[0]
    assert len(res) == len(dets) == NUM_DETS
    torch.testing.assert_close(res.bboxes, dets.bboxes)
    torch.testing.assert_close(res.scores, dets.scores)
    torch.testing.assert_close(scalars.detach(), expected.detach(),
                               atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize('family', FAMILIES)
def test_scalars_of_every_prior_of_every_level_follow_the_formula(
        family, models, image):
    """candidate_scalars of every (level, prior) equal the family's formula
    on the raw outputs (levels in order, priors row-major: one per cell)."""
    model = models[family]
    inputs, samples = preprocess(model, image)
    adapter = build_adapter(model, 'neck')
    with torch.enable_grad():
        state = adapter.forward(inputs, samples)
        locations = adapter.candidate_locations(state, 0)
        locations.labels = torch.zeros_like(locations.cand_level)
        state.results = [locations]
        scalars = adapter.candidate_scalars(state, 0).detach()
        scores, boxes = all_candidates(family, model, state.activations)
    assert len(scalars) == len(scores) and \
        set(locations.cand_level.tolist()) == {0, 1, 2}
    torch.testing.assert_close(scalars[:, 0], scores.detach())
    torch.testing.assert_close(
        scalars[:, 1:], (boxes * torch.tensor([-1., -1., 1., 1.])).detach(),
        atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize('family', FAMILIES)
def test_exact_gradients_equal_independent_autograd(family, runs):
    adapter, state, leaves, _, expected = runs[family]
    with torch.enable_grad():
        pieces = adapter.exact_gradients(state, 0, range(NUM_DETS),
                                         range(5))
        grads = pasted(pieces, state)
        for det in range(NUM_DETS):
            for attr in range(5):
                truth = torch.autograd.grad(expected[det, attr], leaves,
                                            retain_graph=True,
                                            allow_unused=True)
                for level, ref in enumerate(truth):
                    got = grads.get((det, attr), {}).get(level)
                    if ref is None or not bool(ref[0].any()):
                        assert got is None or not bool(got.any())
                        continue
                    torch.testing.assert_close(got, ref[0], atol=1e-5,
                                               rtol=1e-4)


@pytest.mark.parametrize('family', FAMILIES + ['rtmdet_shared'])
def test_fast_path_equals_exact_with_batch_norm(family, models, image):
    model = models[family] if family in models else \
        build_model(family, norm='BN')
    adapter = build_adapter(model, 'neck')
    with torch.enable_grad():  # its own state: the results are replaced
        state = adapter.forward(*preprocess(model, image))
    assert type(adapter).__name__ == dict(
        atss='DenseHeadAdapter', gfl='GFLAdapter',
        rtmdet='RTMDetSepBNAdapter', rtmdet_shared='RTMDetAdapter',
        yolox='YOLOXAdapter')[family]
    assert adapter.has_fast_path() and adapter.fast_path_is_exact()
    # two candidates of every level (detections may all sit on one level),
    # at the map's corner and inside it
    locations = adapter.candidate_locations(state, 0)
    picks = torch.cat([(locations.cand_level == lvl).nonzero()[[0, -7], 0]
                       for lvl in range(3)])
    chosen = locations[picks]
    chosen.labels = torch.zeros_like(chosen.cand_level)
    chosen.img_index = torch.zeros_like(chosen.cand_level)
    state.results = [chosen]
    num = len(chosen)
    with torch.enable_grad():
        exact = pasted(adapter.exact_gradients(state, 0, range(num),
                                               range(5)), state)
        fast = pasted(adapter.fast_gradients(state, 0, range(num),
                                             range(5)), state)
    assert exact.keys() == fast.keys() and len(exact) == num * 5
    for pair, levels in exact.items():
        for level, grad in levels.items():
            torch.testing.assert_close(fast[pair][level], grad, atol=1e-5,
                                       rtol=1e-4)


@pytest.mark.parametrize('family', FAMILIES)
def test_explain_api_maps_every_detection(family, models, image):
    """Through the API (default method: fast where it exists) each detection
    gets a non-negative score map on the original image."""
    model = models[family]
    out = explain(model, image, explainer=ODAM(smooth='none'),
                  targets=('score', ), score_thr=0.0)
    maps = out.pred_instances.heatmaps.to_tensor()
    assert maps.shape[:2] == (NUM_DETS, 1)
    assert maps.shape[-2:] == image.shape[:2]
    assert bool(torch.isfinite(maps).all()) and bool((maps >= 0).all())
    assert bool((maps.flatten(1).amax(1) > 0).any())


@pytest.mark.parametrize('family', FAMILIES)
def test_candidate_pools_hold_the_detections(family, models, runs, image):
    """Every (level, prior) is a location; the pre-NMS pool is the head's
    own with_nms=False output and contains each final detection with its
    identity, score and box."""
    model = models[family]
    inputs, samples = preprocess(model, image)
    adapter, state = runs[family][:2]
    locations = adapter.candidate_locations(state, 0)
    sizes = state.extras['featmap_sizes']
    anchors = model.bbox_head.prior_generator.num_base_priors
    assert len(locations) == sum(int(h) * int(w) * a
                                 for (h, w), a in zip(sizes, anchors))
    pool = adapter.pre_nms_candidates(state, 0)
    with torch.no_grad():
        feats = model.extract_feat(inputs)
        expected = model.bbox_head.predict_by_feat(
            *model.bbox_head(feats), batch_img_metas=[samples[0].metainfo],
            rescale=True, with_nms=False)[0]
    torch.testing.assert_close(pool.bboxes, expected.bboxes)
    torch.testing.assert_close(pool.scores, expected.scores)
    # MMDetection's NMS of the pool gives the final detections
    kept, _ = batched_nms(pool.bboxes, pool.scores, pool.labels,
                          model.bbox_head.test_cfg.nms)
    res = state.results[0]
    torch.testing.assert_close(kept[:NUM_DETS, :4], res.bboxes)
    torch.testing.assert_close(kept[:NUM_DETS, 4], res.scores)
    for k in range(len(res)):
        same = (pool.cand_level == res.cand_level[k]) & \
            (pool.cand_index == res.cand_index[k]) & \
            (pool.labels == res.labels[k])
        assert int(same.sum()) == 1
        j = int(same.nonzero()[0, 0])
        torch.testing.assert_close(pool.scores[j], res.scores[k])
        torch.testing.assert_close(pool.bboxes[j], res.bboxes[k])


# random RTMDet boxes are below a pixel wide: none overlaps another
@pytest.mark.parametrize('family', ['atss', 'gfl', 'yolox'])
def test_suppressed_candidates_are_explained_with_their_own_score(
        family, models, image):
    """explain(candidates=SuppressedCandidates()) selects pool rows that are
    not detections; each row's explained score is its pool score."""
    from mmdet_odam.explainers import SuppressedCandidates
    model = models[family]
    dets = explain(model, image, targets=('score', ), score_thr=0.0,
                   explainer=ODAM(smooth='none')).pred_instances
    rows = explain(model, image, targets=('score', ), score_thr=0.0,
                   explainer=ODAM(smooth='none'),
                   candidates=SuppressedCandidates(iou_thr=0.1)
                   ).pred_instances
    assert len(rows) > 0
    _, pool_scores, pool_boxes = _pool(model, image)
    for box, score in zip(rows.bboxes, rows.scores):
        hit = ((pool_boxes - box).abs().amax(-1) < 1e-3) & \
            ((pool_scores - score).abs() < 1e-6)
        assert bool(hit.any())
        assert not bool(((dets.bboxes - box).abs().amax(-1) < 1e-4).any())
    maps = rows.heatmaps.to_tensor()
    assert bool(torch.isfinite(maps).all()) and bool((maps > 0).any())


def _pool(model, image):
    """MMDetection's own pre-NMS pool (labels, scores, boxes)."""
    inputs, samples = preprocess(model, image)
    with torch.no_grad():
        pool = model.bbox_head.predict_by_feat(
            *model.bbox_head(model.extract_feat(inputs)),
            batch_img_metas=[samples[0].metainfo], rescale=True,
            with_nms=False)[0]
    return pool.labels, pool.scores, pool.bboxes


def test_tood_is_refused_in_one_line_naming_the_families():
    from mmdet.registry import MODELS
    from mmengine.utils import get_installed_path
    cfg = Config.fromfile(get_installed_path('mmdet') +
                          '/.mim/configs/tood/tood_r50_fpn_1x_coco.py')
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    with pytest.raises(TypeError) as error:
        build_adapter(model, 'neck')
    message = str(error.value)
    assert '\n' not in message and 'TOODHead overrides' in message
    for family in ('GFL', 'RTMDet', 'YOLOX', 'ATSS'):
        assert family in message


@pytest.mark.parametrize('family', FAMILIES)
def test_odam_nms_runs_and_reduces_to_the_heads_nms(family, models, image):
    """With classical thresholds (t_low=0, t_high=1) Odam-NMS keeps what the
    head's own NMS keeps; with the paper's thresholds it runs (maps from the
    family's adapter) and keeps at least as many boxes."""
    from mmdet.apis import inference_detector

    from mmdet_odam.models import enable_odam_nms
    model = enable_odam_nms(models[family])  # active only with odam_nms
    cfg = model.bbox_head.test_cfg
    standard = inference_detector(model, image).pred_instances
    try:
        cfg.odam_nms = dict(type='OdamNMS', iou_threshold=0.6, t_high=1.0,
                            t_low=0.0)
        classical = inference_detector(model, image).pred_instances
        cfg.odam_nms = dict(type='OdamNMS', iou_threshold=0.6, t_high=0.8,
                            t_low=0.2, max_candidates=32)
        paper = inference_detector(model, image).pred_instances
    finally:
        cfg.pop('odam_nms')
    order = standard.scores.argsort(descending=True)
    torch.testing.assert_close(classical.scores, standard.scores[order])
    torch.testing.assert_close(classical.bboxes, standard.bboxes[order])
    assert len(paper) >= len(standard)


@pytest.mark.parametrize('family,head_type', [('gfl', None),
                                              ('rtmdet', 'RTMDetHead')])
def test_odam_train_logs_the_hand_sum_of_its_positives(family, head_type):
    """Odam-Train on GFL (distribution decoding) and RTMDet (GroupNorm head):
    the logged losses equal the hand sum over the recorded positives
    (helpers of tests/test_odam_train.py)."""
    from mmdet.registry import MODELS
    from test_odam_train import (CROWD, _batch, assert_losses_equal_hand_sum,
                                 record_loss_inputs)

    from mmdet_odam.models import OdamTrainLoss, install_odam_train
    cfg = tiny_config(family)
    if head_type:  # RTMDet's shared-norm head with GroupNorm
        head = cfg.model.bbox_head
        head.type = head_type
        head.norm_cfg = dict(type='GN', num_groups=8)
        for key in ('share_conv', 'exp_on_reg'):
            head.pop(key, None)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    odam = OdamTrainLoss()
    recorded = record_loss_inputs(odam)
    install_odam_train(model, odam)
    inputs, samples = _batch([CROWD, CROWD[:2]])
    losses = model.loss(inputs, samples)
    assert all(len(pos) > 0 for pos in recorded[0][0])
    assert_losses_equal_hand_sum(losses, recorded[0], odam)


@pytest.mark.parametrize('family,named', [
    ('yolox', 'no target recovery for YOLOXHead'),
    ('rtmdet', 'RTMDetSepBNHead is not a conv-only dense head')])
def test_odam_train_refusals_are_one_line(family, named):
    from mmdet.registry import MODELS
    from test_odam_train import CROWD, _batch

    from mmdet_odam.models import OdamTrainLoss, install_odam_train
    model = MODELS.build(tiny_config(family).model)
    model.train()
    install_odam_train(model, OdamTrainLoss())
    inputs, samples = _batch([CROWD])
    with pytest.raises(TypeError) as error:
        model.loss(inputs, samples)
    assert named in str(error.value) and '\n' not in str(error.value)


TRAINED_ATSS = ('configs/atss/atss_tiny_synthetic-crowd.py',
                'checkpoints/atss_tiny_synthetic-crowd.pth')


def test_trained_tiny_atss_detects_and_tools_explain_explains_it(
        tmp_path, synthetic_crowd_root):
    """The shipped tiny ATSS finds the synthetic people (IoU with the ground
    truth, pycocotools-style boxes from the annotation file) and
    tools/explain.py explains it: each score map is brighter inside its own
    box than outside."""
    import json

    from mmdet.structures.bbox import bbox_overlaps
    from mmdet_odam.apis.export import load_heatmaps_npz
    ann = json.loads((synthetic_crowd_root / 'annotations' /
                      'instances_val.json').read_text())
    image = ann['images'][0]
    gt = torch.tensor([a['bbox'] for a in ann['annotations']
                       if a['image_id'] == image['id']], dtype=torch.float32)
    gt[:, 2:] += gt[:, :2]  # COCO xywh -> xyxy
    path = synthetic_crowd_root / 'images' / image['file_name']
    out = tmp_path / 'out'
    res = subprocess.run(
        [sys.executable, 'tools/explain.py', *TRAINED_ATSS, str(path),
         '--out-dir', str(out), '--device', 'cpu', '--score-thr', '0.3',
         '--targets', 'score'], capture_output=True, text=True, timeout=300,
        cwd=ROOT)
    assert res.returncode == 0, res.stderr
    with np.load(out / f'{path.stem}.npz') as data:
        boxes = torch.from_numpy(data['bboxes'])
        maps = load_heatmaps_npz(data)[:, 0]
    assert len(boxes) > 0
    best_iou = bbox_overlaps(gt, boxes).amax(dim=1)
    assert float(best_iou.max()) > 0.5
    for box, heat in zip(boxes.round().long().tolist(), maps):
        x1, y1, x2, y2 = (max(v, 0) for v in box)
        inside = np.zeros(heat.shape, dtype=bool)
        inside[y1:y2, x1:x2] = True
        assert heat[inside].mean() > heat[~inside].mean()


def test_non_finite_box_sizes_are_a_one_line_error_with_adaptive_sigma():
    from mmdet_odam.explainers.heatmap import smoothing_sigmas
    sizes = torch.tensor([[10., 20.], [float('inf'), 5.]])
    with pytest.raises(ValueError, match="smooth='none'"):
        smoothing_sigmas('adaptive', sizes, torch.tensor([8., 8.]))
    assert smoothing_sigmas(2.0, sizes, torch.tensor([8., 8.])).tolist() == \
        [2.0, 2.0]
