"""TF's COCO SSD-MobileNetV2 as an MMDetection model, checked against
independent truth: OpenCV's own run of the same frozen graph on real photos
and video frames, the anchor sizes in OpenCV's text graph, hand-computed TF
anchor arithmetic, MMDetection's unmodified MobileNetV2, and plain autograd
for ODAM.

Tests marked ``real_model`` need ``make real-model`` (the converted checkpoint,
the TF graph and the photos in ``data/real_model``); they are skipped with
that reason otherwise, unless ``MMDET_ODAM_REQUIRE_REAL_MODEL=1`` (set by CI),
where a missing cache is a failure. The rest run on random weights.
"""
import math
import os
import os.path as osp
import re
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from mmdet.apis import inference_detector, init_detector
from mmdet.structures.bbox import bbox_overlaps
from mmengine.config import Config

import mmdet_odam  # noqa: F401  (registers the modules)
from mmdet_odam.apis import explain
from mmdet_odam.apis.detector import init_explained_detector
from mmdet_odam.apis.explain import preprocess
from mmdet_odam.explainers import ODAM, build_adapter
from mmdet_odam.models.tf_ssd import TFMobileNetV2, tf_ssd_anchor_shapes

from heatmap_reference import to_image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))
from convert_tf_ssd import (COCO_IDS, read_tf_weights,  # noqa: E402
                            tf_to_mmdet_key)

CONFIG = osp.join(ROOT, 'configs/ssd/ssd_mobilenetv2_tf-coco.py')
ODAM_NMS_CONFIG = osp.join(ROOT, 'configs/ssd/ssd_mobilenetv2_tf-coco_odam-nms.py')
CACHE = osp.join(ROOT, 'data', 'real_model')
CHECKPOINT = osp.join(CACHE, 'ssd_mobilenetv2_tf-coco.pth')
PB = osp.join(CACHE, 'model', 'frozen_inference_graph.pb')
PBTXT = osp.join(CACHE, 'model', 'ssd_mobilenet_v2_coco_2018_03_29.pbtxt')
PHOTOS = ('astronaut.png', 'coffee.png', 'chelsea.png', 'camera.png')
FRAMES = ('vtest_0000.png', 'vtest_0300.png', 'vtest_0600.png')
# parity tolerances (issue 16): every OpenCV detection above SCORE_THR
SCORE_THR, MIN_IOU, MAX_SCORE_DIFF = 0.3, 0.95, 0.02

_have_cache = all(osp.isfile(p) for p in (CHECKPOINT, PB, PBTXT)) and \
    osp.isdir(osp.join(CACHE, 'images'))
if not _have_cache and os.environ.get('MMDET_ODAM_REQUIRE_REAL_MODEL') == '1':
    raise RuntimeError(f'MMDET_ODAM_REQUIRE_REAL_MODEL=1 but {CACHE} lacks '
                       'the converted TF SSD: run `make real-model`')
real_model = pytest.mark.skipif(
    not _have_cache, reason=f'converted TF SSD not in {CACHE} '
    '(run `make real-model`: downloads and converts it)')


def real_images():
    """Photos, and the pedestrian-video frames where apt could fetch them."""
    paths = [osp.join(CACHE, 'images', p) for p in PHOTOS]
    frames = [osp.join(CACHE, 'frames', f) for f in FRAMES]
    return paths + [f for f in frames if osp.isfile(f)]


@pytest.fixture(scope='module')
def converted():
    return init_explained_detector(CONFIG, CHECKPOINT)


@pytest.fixture(scope='module')
def random_ssd():
    """The architecture with random weights, few detections."""
    torch.manual_seed(0)
    cfg = Config.fromfile(CONFIG)
    cfg.model.test_cfg.update(max_per_img=4, score_thr=0.0)
    model = init_detector(cfg, None, device='cpu')
    # PyTorch's default init shrinks activations through the ~60 layers to
    # ~1e-16 gradients (below the heat maps' normalisation floor): He-normal
    # convs keep their scale, small predictors keep scores off saturation
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight)
    for conv in [*model.bbox_head.cls_convs, *model.bbox_head.reg_convs]:
        conv[0].weight.data.mul_(0.02)
    model.dataset_meta = dict(classes=tuple(f'c{i}' for i in range(80)))
    return model.eval()


# -- architecture pieces, against hand computation / MMDetection ----------------
def test_tf_anchor_shapes_are_tfs_arithmetic():
    shapes = tf_ssd_anchor_shapes(6, 0.2, 0.95, (1.0, 2.0, 0.5, 3.0, 0.333))
    assert [len(s) for s in shapes] == [3, 6, 6, 6, 6, 6]
    r2 = math.sqrt(2)
    expected0 = [(0.1, 0.1), (0.2 * r2, 0.2 / r2), (0.2 / r2, 0.2 * r2)]
    np.testing.assert_allclose(shapes[0], expected0, rtol=1e-12)
    # level 1: scale 0.35; aspect 3 -> (0.35 sqrt 3, 0.35 / sqrt 3); the
    # interpolated anchor sqrt(0.35 * 0.5), square
    np.testing.assert_allclose(shapes[1][3], (0.35 * math.sqrt(3),
                                              0.35 / math.sqrt(3)))
    np.testing.assert_allclose(shapes[1][5], (math.sqrt(0.175), ) * 2)
    # last level interpolates towards scale 1
    np.testing.assert_allclose(shapes[5][5], (math.sqrt(0.95), ) * 2)


def test_anchor_centres_are_cell_centres_of_the_input(random_ssd):
    gen = random_ssd.bbox_head.prior_generator
    priors = gen.grid_priors([(19, 19), (10, 10), (5, 5), (3, 3), (2, 2),
                              (1, 1)], device='cpu')
    assert [len(p) for p in priors] == [19 * 19 * 3] + [
        s * s * 6 for s in (10, 5, 3, 2, 1)]
    centres = (priors[0][:, :2] + priors[0][:, 2:]) / 2
    # anchor index = (row * 19 + col) * 3 + a; centre (col + 0.5) * 300 / 19
    row, col = 18, 7
    for a in range(3):
        np.testing.assert_allclose(
            centres[(row * 19 + col) * 3 + a].numpy(),
            [(col + 0.5) * 300 / 19, (row + 0.5) * 300 / 19], rtol=1e-5)
    np.testing.assert_allclose(priors[5][0].numpy(),
                               [150 - 142.5, 150 - 142.5, 292.5, 292.5])


def test_expansion_output_is_mmdetections_expand_conv_output():
    """TFMobileNetV2's extra output equals the expand conv output of the
    unmodified MMDetection MobileNetV2 (read by a hook), and its last output
    the unmodified backbone's."""
    from mmdet.models.backbones import MobileNetV2
    torch.manual_seed(0)
    ours = TFMobileNetV2(out_indices=(7, ), expand_out_indices=(5, ))
    plain = MobileNetV2(out_indices=(7, ))
    plain.load_state_dict(ours.state_dict())
    ours.eval()  # (MobileNetV2.train returns None: no chaining)
    plain.eval()
    seen = []
    plain.layer6[0].expand_conv.register_forward_hook(
        lambda m, i, o: seen.append(o))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expanded, last = ours(x)
        plain_last, = plain(x)
    assert expanded.shape[1] == 576
    torch.testing.assert_close(expanded, seen[0])
    torch.testing.assert_close(last, plain_last)


def test_bad_expansion_index_is_one_clear_error():
    with pytest.raises(ValueError, match='expand_out_indices'):
        TFMobileNetV2(expand_out_indices=(0, ))  # layer1: no expansion
    with pytest.raises(ValueError, match='expand_out_indices'):
        TFMobileNetV2(expand_out_indices=(7, ))


def test_tf_names_map_to_mmdetection_modules():
    prefix = 'FeatureExtractor/MobilenetV2/'
    assert tf_to_mmdet_key(prefix + 'Conv') == 'backbone.conv1'
    assert tf_to_mmdet_key(prefix + 'expanded_conv/depthwise') == \
        'backbone.layer1.0.depthwise_conv'
    # blocks 1-2 layer2, 3-5 layer3, 6-9 layer4, 10-12 layer5, 13-15 layer6
    assert tf_to_mmdet_key(prefix + 'expanded_conv_13/expand') == \
        'backbone.layer6.0.expand_conv'
    assert tf_to_mmdet_key(prefix + 'expanded_conv_9/project') == \
        'backbone.layer4.3.linear_conv'
    assert tf_to_mmdet_key(prefix + 'Conv_1') == 'backbone.conv2'
    assert tf_to_mmdet_key(
        prefix + 'layer_19_2_Conv2d_3_3x3_s2_256_depthwise') == \
        'neck.extra_layers.1.1.depthwise_conv'
    assert tf_to_mmdet_key(prefix + 'layer_19_1_Conv2d_5_1x1_64') == \
        'neck.extra_layers.3.0'
    assert tf_to_mmdet_key('BoxPredictor_4/BoxEncodingPredictor') == \
        'bbox_head.reg_convs.4.0'
    assert tf_to_mmdet_key('Preprocessor/mul') is None


def test_coco_ids_follow_the_official_category_list():
    """MMDetection's class order vs COCO category ids (a few from the
    official list: 1 person, 3 car, 6 bus, 17 cat, 47 cup, 90 toothbrush)."""
    from mmdet.datasets import CocoDataset
    classes = CocoDataset.METAINFO['classes']
    assert len(COCO_IDS) == len(classes) == 80
    named = {1: 'person', 3: 'car', 6: 'bus', 17: 'cat', 47: 'cup',
             90: 'toothbrush'}
    for coco_id, name in named.items():
        assert classes[COCO_IDS.index(coco_id)] == name


# -- ODAM and Odam-NMS on the SSD head --------------------------------------------
def _candidate(model, feats, det, meta):
    """(score, extents) of the candidate equal to ``det``, by exhaustive
    search over all raw head outputs (no candidate tracking)."""
    head = model.bbox_head
    cls_scores, bbox_preds = head(feats)
    sizes = [c.shape[-2:] for c in cls_scores]
    priors = torch.cat(head.prior_generator.grid_priors(
        sizes, device=feats[0].device))
    scores = torch.cat([c[0].permute(1, 2, 0).reshape(-1, 80)
                        for c in cls_scores]).sigmoid()
    deltas = torch.cat([b[0].permute(1, 2, 0).reshape(-1, 4)
                        for b in bbox_preds])
    boxes = head.bbox_coder.decode(priors, deltas)  # unclamped, input pixels
    scale = boxes.new_tensor(meta['scale_factor']).repeat(2)
    clamped = head.bbox_coder.decode(priors, deltas,
                                     max_shape=meta['img_shape']) / scale
    hit = ((scores[:, int(det.labels)] - det.scores).abs() < 1e-6) & \
        ((clamped - det.bboxes).abs().amax(1) < 1e-2)
    assert int(hit.sum()) >= 1, 'detection not found among candidates'
    index = int(hit.nonzero()[0, 0])
    x1, y1, x2, y2 = boxes[index]
    return dict(score=scores[index, int(det.labels)], x1=-x1, y1=-y1, x2=x2,
                y2=y2)


def _reference_map(feats, strides, y, meta):
    grads = torch.autograd.grad(y, feats, retain_graph=True)
    total = torch.zeros(meta['img_shape'])
    for feat, grad, stride in zip(feats, grads, strides):
        cells = torch.relu((grad[0] * feat[0].detach()).sum(0))
        total += to_image(cells, stride, meta['img_shape'])
    total = torch.nn.functional.interpolate(
        total[None, None], size=meta['ori_shape'][:2], mode='bilinear')[0, 0]
    return total / total.max() if total.max() > 0 else total  # zero stays


def _check_odam_against_autograd(model, image, num_dets, score_thr=0.0):
    targets = ('score', 'x1', 'y1', 'x2', 'y2')
    adapter = build_adapter(model)
    strides = adapter.neck_strides()
    assert strides == [16, 30, 60, 100, 150, 300]  # 300 / map size, rounded
    out = explain(model, image, targets=targets, score_thr=score_thr,
                  explainer=ODAM(smooth='none', method='exact'))
    assert len(out.pred_instances) >= num_dets
    inputs, samples = preprocess(model, image)
    meta = samples[0].metainfo
    feats = [f.detach().requires_grad_() for f in model.extract_feat(inputs)]
    for d in range(num_dets):
        scalars = _candidate(model, feats, out.pred_instances[d], meta)
        for t, name in enumerate(targets):
            expected = _reference_map(feats, strides, scalars[name], meta)
            got = out.pred_instances.heatmaps[d, t]
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_odam_on_ssd_equals_autograd_random_weights(random_ssd):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    _check_odam_against_autograd(random_ssd, image, num_dets=2)


def test_fast_path_equals_exact_on_ssd(random_ssd):
    """Receptive-field patches through the per-level convs give the exact
    gradients (no GroupNorm in the head), all attributes."""
    assert build_adapter(random_ssd).fast_path_is_exact()
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    maps = [explain(random_ssd, image, score_thr=0.0,
                    explainer=ODAM(smooth='none', method=method)
                    ).pred_instances.heatmaps.to_tensor()
            for method in ('fast', 'exact')]
    assert maps[0].shape[:2] == (4, 6)
    torch.testing.assert_close(maps[0], maps[1], atol=1e-5, rtol=0)


def test_plain_ssd_head_has_no_fast_path():
    """MMDetection's SSDHead runs its own per-level loop, not
    forward_single: the patch path must not be taken for it."""
    from mmdet.models.dense_heads import SSDHead
    from mmdet_odam.explainers.adapters.dense import (DenseHeadAdapter,
                                                      runs_forward_single)
    head = SSDHead(num_classes=2, in_channels=(8, ) * 6,
                   anchor_generator=dict(type='TFSSDAnchorGenerator')).eval()
    assert not runs_forward_single(head)
    assert not DenseHeadAdapter.from_head(head).has_fast_path()


def test_classical_odam_nms_thresholds_equal_nms_on_ssd(random_ssd):
    """Odam-NMS with T_l = 0, T_h = 1 is standard NMS (its documented limit)
    at the same IoU; the odam-nms config turns it on."""
    cfg = Config.fromfile(ODAM_NMS_CONFIG)
    odam_cfg = cfg.model.test_cfg.odam_nms
    assert odam_cfg.type == 'OdamNMS'
    cfg.model.test_cfg.update(max_per_img=30, score_thr=0.05, nms_pre=300,
                              nms=dict(type='nms', iou_threshold=0.5))
    model = init_detector(cfg, None, device='cpu')
    model.load_state_dict(random_ssd.state_dict())
    model.eval()
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    head_cfg = model.bbox_head.test_cfg
    odam = inference_detector(model, image).pred_instances
    head_cfg['odam_nms'] = dict(odam_cfg, t_low=0, t_high=1)
    ours = inference_detector(model, image).pred_instances
    head_cfg.pop('odam_nms')
    standard = inference_detector(model, image).pred_instances
    assert len(standard) > 5
    for key in ('bboxes', 'scores', 'labels'):
        assert torch.equal(standard[key], ours[key]), key
    assert 0 < len(odam) <= 30


# -- the converted model vs OpenCV's run of the same graph -------------------------
@real_model
def test_anchors_equal_opencv_text_graph_priorboxes(converted):
    text = open(PBTXT).read()
    gen = converted.bbox_head.prior_generator
    for level, base in enumerate(gen.base_anchors):
        node = re.search(r'name: "PriorBox_%d"(.*?)\n}' % level, text, re.S)
        values = {}
        for key in ('width', 'height'):
            block = re.search(r'key: "%s"(.*?)\n    }\n  }' % key,
                              node.group(1), re.S).group(1)
            values[key] = [float(v) for v in
                           re.findall(r'float_val: ([0-9.e+-]+)', block)]
        wh = (base[:, 2:] - base[:, :2]).numpy()
        np.testing.assert_allclose(wh[:, 0], values['width'], rtol=1e-5)
        np.testing.assert_allclose(wh[:, 1], values['height'], rtol=1e-5)


@real_model
def test_every_tf_weight_has_its_module():
    weights = read_tf_weights(PB, PBTXT)
    model = init_detector(CONFIG, None, device='cpu')
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()
                if not k.endswith('num_batches_tracked')}
    assert {k: tuple(v.shape) for k, v in weights.items()} == expected


def opencv_detections(net, img: np.ndarray) -> tuple:
    """OpenCV's run of the TF graph as its sample does: (boxes in image
    pixels, clipped as MMDetection clips, scores, COCO ids), score-sorted."""
    import cv2
    h, w = img.shape[:2]
    net.setInput(cv2.dnn.blobFromImage(img, size=(300, 300), swapRB=True))
    out = net.forward()[0, 0]
    boxes = torch.from_numpy(np.clip(out[:, 3:7], 0, 1) * [w, h, w, h])
    return boxes.float(), torch.from_numpy(out[:, 2]), out[:, 1].astype(int)


@real_model
def test_detections_match_opencvs_run_of_the_graph(converted):
    import cv2
    net = cv2.dnn.readNetFromTensorflow(PB, PBTXT)
    worst_iou, worst_diff, checked = 1.0, 0.0, 0
    for path in real_images():
        img = mmcv.imread(path)
        ref_boxes, ref_scores, ref_ids = opencv_detections(net, img)
        ours = inference_detector(converted, img).pred_instances
        ours_ids = np.array([COCO_IDS[i] for i in ours.labels.tolist()])
        iou = bbox_overlaps(ref_boxes, ours.bboxes) if len(ours) else \
            torch.zeros(len(ref_boxes), 0)
        used = set()
        for i in (ref_scores > SCORE_THR).nonzero()[:, 0].tolist():
            same = torch.from_numpy(ours_ids == ref_ids[i]) & \
                ((ours.scores - ref_scores[i]).abs() <= MAX_SCORE_DIFF) & \
                (iou[i] >= MIN_IOU)
            match = [j for j in same.nonzero()[:, 0].tolist()
                     if j not in used]
            assert match, (f'{osp.basename(path)}: OpenCV detection {i} '
                           f'(COCO id {ref_ids[i]}, score '
                           f'{float(ref_scores[i]):.3f}) has no match')
            j = match[0]
            used.add(j)
            worst_iou = min(worst_iou, float(iou[i, j]))
            worst_diff = max(worst_diff,
                             float((ours.scores[j] - ref_scores[i]).abs()))
            checked += 1
        # and nothing of ours above the threshold that OpenCV lacks
        assert int((ours.scores > SCORE_THR + MAX_SCORE_DIFF).sum()) <= \
            len(used)
    assert checked >= 8
    print(f'parity: {checked} detections, min IoU {worst_iou:.5f}, '
          f'max |score diff| {worst_diff:.2e}')


@real_model
def test_odam_on_the_converted_model_equals_autograd(converted):
    img = mmcv.imread(osp.join(CACHE, 'images', 'coffee.png'))
    _check_odam_against_autograd(converted, img, num_dets=3, score_thr=0.7)


@real_model
def test_explain_tool_on_a_real_photo(tmp_path):
    out = tmp_path / 'out'
    run = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'explain.py'), CONFIG,
         CHECKPOINT, osp.join(CACHE, 'images', 'coffee.png'), '--out-dir',
         str(out), '--targets', 'score', 'combined', '--score-thr', '0.5',
         '--device', 'cpu'], capture_output=True, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert run.returncode == 0, run.stderr[-2000:]
    written = sorted(p.name for p in out.rglob('*') if p.is_file())
    assert any(name.endswith('.png') for name in written), written
    assert any(name.endswith('.json') or name.endswith('.npz')
               for name in written), written
