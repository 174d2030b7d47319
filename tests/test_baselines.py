"""Baseline explainers (Grad-CAM, Grad-CAM++, D-RISE, CAMERAS) and the
dataset-scale evaluator, on random-init tiny FCOS models."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.apis import init_detector
from mmengine.config import Config

import mmdet_odam  # noqa: F401
from mmdet_odam.apis import build_explainer, explain
from mmdet_odam.explainers import (CAMERAS, DRISE, ODAM, GradCAM,
                                   GradCAMPlusPlus)
from mmdet_odam.explainers.cameras import (best_iou_match, rescale_input,
                                           to_common_grid)
from mmdet_odam.explainers.drise import (drise_weights, generate_grids,
                                         grids_to_masks)
from mmdet_odam.explainers.gradcam import gradcampp_map, gradcampp_weights

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / 'configs/fcos/fcos_tiny_synthetic-crowd.py')


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    cfg = Config.fromfile(CONFIG)
    cfg.model.test_cfg.max_per_img = 6  # few detections: quick tests
    det = init_detector(cfg, None, device='cpu')
    det.dataset_meta = dict(classes=('person', ))
    return det.eval()


@pytest.fixture(scope='module')
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    img[30:80, 40:70] = (200, 40, 40)
    return img


# -- Grad-CAM / Grad-CAM++ ---------------------------------------------------
def test_gradcam_equals_odam_with_global_smoothing(model, image):
    ref = explain(model, image, explainer=ODAM(smooth='global',
                                               method='exact'),
                  score_thr=0.0)
    out = explain(model, image, explainer=dict(type='GradCAM'), score_thr=0.0)
    assert len(out.pred_instances) > 0
    assert torch.equal(out.pred_instances.heatmaps.to_tensor(),
                       ref.pred_instances.heatmaps.to_tensor())
    assert out.metainfo['targets'] == ref.metainfo['targets']


def test_default_gradcam_is_textbook_on_a_groupnorm_head(model, image):
    """FCOS's head normalises with GroupNorm: the default Grad-CAM must use
    the exact gradient (through the normalisation statistics), i.e. equal
    ReLU(sum_k mean(dY/dA_k) A_k) computed here by plain autograd."""
    import torch.nn.functional as F

    from mmdet_odam.apis.explain import preprocess
    image = np.ascontiguousarray(image.repeat(2, 0).repeat(2, 1))  # unresized
    out = explain(model, image, explainer=dict(type='GradCAM'),
                  targets=('score', ), score_thr=0.0)
    inputs, samples = preprocess(model, image)
    assert tuple(samples[0].metainfo['img_shape']) == image.shape[:2]
    feats = [f.detach().requires_grad_() for f in model.extract_feat(inputs)]
    head = model.bbox_head
    cls, reg, ctr = head(feats)
    priors = head.prior_generator.grid_priors([c.shape[-2:] for c in cls],
                                              device=feats[0].device)
    scores = torch.cat([(c[0, 0].sigmoid() * t[0, 0].sigmoid()).flatten()
                        for c, t in zip(cls, ctr)])
    h, w = image.shape[:2]
    boxes = torch.cat([
        head.bbox_coder.decode(p, r[0].permute(1, 2, 0).reshape(-1, 4),
                               max_shape=(h, w))
        for p, r in zip(priors, reg)])
    pred = out.pred_instances
    assert len(pred) > 1
    for i in range(len(pred)):
        hit = ((scores - pred.scores[i]).abs() < 1e-6) & (
            (boxes - pred.bboxes[i]).abs().amax(1) < 1e-3)
        grads = torch.autograd.grad(scores[int(hit.nonzero()[0, 0])], feats,
                                    retain_graph=True)
        total = torch.zeros(h, w)
        for feat, grad, stride in zip(feats, grads, head.strides):
            if not grad.any():
                continue
            weights = grad[0].mean(dim=(1, 2))  # textbook: pooled gradient
            grid = torch.relu(torch.einsum('c,chw->hw', weights, feat[0]))
            up = F.interpolate(F.pad(grid, (1, 1, 1, 1))[None, None],
                               scale_factor=stride, mode='bilinear')
            total += up[0, 0, stride:stride + h, stride:stride + w]
        torch.testing.assert_close(pred.heatmaps[i, 0], total / total.max(),
                                   atol=1e-4, rtol=0)


def test_gradcampp_weights_hand_computed():
    grads = torch.tensor([[[[1.0, 2.0], [0.0, -1.0]],
                           [[0.5, 0.0], [0.0, 0.0]]]])  # (1, 2, 2, 2)
    acts = torch.tensor([[[1.0, 0.0], [2.0, 1.0]],
                         [[2.0, 2.0], [2.0, 2.0]]])  # sums 4 and 8
    # channel 0: alpha = g^2 / (2 g^2 + 4 g^3): 1/6 at g=1, 4/40 at g=2;
    # g = -1 has ReLU(g) = 0 and g = 0 has alpha = 0
    # channel 1: alpha = 0.25 / (0.5 + 8 * 0.125) = 1/6 at g = 0.5
    w0 = 1 / 6 * 1 + 0.1 * 2
    w1 = 1 / 6 * 0.5
    weights = gradcampp_weights(grads, acts)
    assert weights[0].tolist() == pytest.approx([w0, w1])
    expected = torch.relu(w0 * acts[0] + w1 * acts[1])
    assert torch.allclose(gradcampp_map(grads, acts)[0], expected)


def test_gradcampp_explains_every_detection(model, image):
    out = explain(model, image, explainer=GradCAMPlusPlus(),
                  targets=('score', ), score_thr=0.0)
    maps = out.pred_instances.heatmaps.to_tensor()
    assert maps.shape == (len(out.pred_instances), 1, 96, 128)
    assert maps.min() >= 0 and maps.max() <= 1


# -- D-RISE -------------------------------------------------------------------
def test_drise_masks_are_smooth_and_batch_independent():
    gen = torch.Generator().manual_seed(3)
    grids, shifts = generate_grids(10, 4, 0.5, (8, 8), gen)
    assert set(grids.unique().tolist()) <= {0.0, 1.0}
    assert shifts.min() >= 0 and shifts.max() < 8
    masks = grids_to_masks(grids, shifts, (30, 32), (8, 8))
    assert masks.shape == (10, 30, 32)
    assert masks.min() >= 0 and masks.max() <= 1
    # bilinear smoothing gives intermediate values
    assert bool(((masks > 0.05) & (masks < 0.95)).any())
    parts = torch.cat([grids_to_masks(grids[:4], shifts[:4], (30, 32),
                                      (8, 8)),
                       grids_to_masks(grids[4:], shifts[4:], (30, 32),
                                      (8, 8))])
    assert torch.equal(parts, masks)


def test_drise_weights_iou_class_and_objectness():
    targets = torch.tensor([[0., 0., 10., 10.]])
    boxes = torch.tensor([[0., 0., 10., 20.], [0., 0., 10., 10.]])
    labels = torch.tensor([0, 1])
    ones = torch.ones(2)
    # same class: IoU 0.5; the exact box is another class (cosine 0)
    assert drise_weights(targets, torch.tensor([0]), boxes, labels,
                         ones).tolist() == pytest.approx([0.5])
    assert drise_weights(targets, torch.tensor([0]), boxes, labels,
                         torch.tensor([0.4, 1.0])).tolist() == \
        pytest.approx([0.2])
    assert drise_weights(targets, torch.tensor([0]), boxes[:0], labels[:0],
                         ones[:0]).tolist() == [0.0]


def test_drise_shape_range_and_seed(model, image):
    kwargs = dict(targets=('score', 'combined'), score_thr=0.0)
    a = explain(model, image, explainer=DRISE(num_masks=12, batch_size=5,
                                              seed=1), **kwargs)
    again = explain(model, image, explainer=DRISE(num_masks=12, batch_size=5,
                                                  seed=1), **kwargs)
    b = explain(model, image, explainer=dict(type='DRISE', num_masks=12,
                                             batch_size=12, seed=1), **kwargs)
    c = explain(model, image, explainer=DRISE(num_masks=12, seed=2), **kwargs)
    maps = a.pred_instances.heatmaps.to_tensor()
    assert len(a.pred_instances) > 0
    assert maps.shape == (len(a.pred_instances), 2, 96, 128)
    assert maps.min() >= 0 and maps.max() <= 1
    assert torch.equal(maps[:, 0], maps[:, 1])  # one map per detection
    assert torch.equal(maps, again.pred_instances.heatmaps.to_tensor())
    # same masks in other batches: only batched-forward rounding differs
    assert torch.allclose(maps, b.pred_instances.heatmaps.to_tensor(), atol=1e-4)
    assert not torch.equal(maps, c.pred_instances.heatmaps.to_tensor())
    assert torch.equal(a.pred_instances.bboxes, b.pred_instances.bboxes)


# -- CAMERAS ------------------------------------------------------------------
@pytest.mark.parametrize('base', [dict(type='ODAM'), dict(type='GradCAM'),
                                  dict(type='GradCAMPlusPlus'),
                                  dict(type='ODAM', method='exact')])
def test_cameras_single_scale_equals_its_base(model, image, base):
    ref = explain(model, image, explainer=base, score_thr=0.0)
    out = explain(model, image, score_thr=0.0,
                  explainer=dict(type='CAMERAS', base=base, scales=(1.0, )))
    assert torch.equal(out.pred_instances.bboxes, ref.pred_instances.bboxes)
    # same computation; only the float summation order of the global mean
    # (a strided vs a contiguous tensor) may differ in the last bit
    assert torch.allclose(out.pred_instances.heatmaps.to_tensor(),
                          ref.pred_instances.heatmaps.to_tensor(), atol=1e-5, rtol=0)


@pytest.mark.parametrize('base', [dict(type='GradCAM'),
                                  dict(type='GradCAMPlusPlus'),
                                  dict(type='ODAM', method='exact')])
def test_cameras_single_scale_equals_its_base_unresized(model, base):
    """An input the test pipeline does not resize (256 x 256)."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    img[60:200, 90:150] = (40, 200, 40)
    ref = explain(model, img, explainer=base, score_thr=0.0)
    out = explain(model, img, score_thr=0.0,
                  explainer=dict(type='CAMERAS', base=base, scales=(1.0, )))
    assert torch.allclose(out.pred_instances.heatmaps.to_tensor(),
                          ref.pred_instances.heatmaps.to_tensor(), atol=1e-5, rtol=0)


def test_cameras_multi_scale_fuses(model, image):
    explainer = build_explainer(dict(type='CAMERAS', scales=(1.0, 1.5)))
    assert isinstance(explainer, CAMERAS) and type(explainer.base) is ODAM
    out = explain(model, image, explainer=explainer, targets=('score', ),
                  score_thr=0.0)
    ref = explain(model, image, explainer=ODAM(), targets=('score', ),
                  score_thr=0.0)
    maps = out.pred_instances.heatmaps.to_tensor()
    assert maps.shape == ref.pred_instances.heatmaps.shape
    assert maps.min() >= 0 and maps.max() <= 1
    assert not torch.allclose(maps, ref.pred_instances.heatmaps.to_tensor())
    with pytest.raises(TypeError):
        CAMERAS(base=DRISE())


def test_cameras_helpers():
    inputs = torch.arange(2 * 6 * 8, dtype=torch.float32).view(1, 2, 6, 8)
    meta = dict(img_shape=(5, 6), ori_shape=(10, 12),
                scale_factor=(0.5, 0.5))
    out, new = rescale_input(inputs, meta, 2.0, pad_size_divisor=4)
    assert out.shape == (1, 2, 12, 12)
    assert new['img_shape'] == (10, 12) and new['pad_shape'] == (12, 12)
    assert new['scale_factor'] == pytest.approx((1.0, 1.0))
    assert out[..., 10:, :].abs().sum() == 0  # padding
    x = torch.rand(3, 4, 4)
    assert to_common_grid(x, (16, 16), 4, (16, 16), 4, (4, 4)) is x
    big = to_common_grid(x, (14, 16), 4, (28, 32), 4, (8, 8))
    assert big.shape == (3, 8, 8) and big[:, 7:].abs().sum() == 0
    ref = torch.tensor([[0., 0., 10., 10.], [50., 50., 60., 60.]])
    boxes = torch.tensor([[1., 1., 10., 10.], [0., 0., 9., 9.],
                          [0., 0., 10., 10.]])
    assert best_iou_match(ref, torch.tensor([0, 0]), boxes,
                          torch.tensor([0, 0, 1])).tolist() == [0, -1]


# -- evaluator through Runner.test() ------------------------------------------
def _tool():
    spec = importlib.util.spec_from_file_location(
        'eval_explanations', ROOT / 'tools/eval_explanations.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluator_runs_on_two_images(synthetic_crowd_root, tmp_path):
    from mmengine.runner import Runner
    tool = _tool()
    args = tool.parse_args([
        CONFIG, 'unused.pth', '--num-images', '2', '--deletion-steps', '3',
        '--score-thr', '0', '--match-iou', '0', '--work-dir',
        str(tmp_path), '--log-interval', '1'])
    cfg = tool.build_method_cfg(Config.fromfile(CONFIG), 'odam', args, 't')
    cfg.load_from = None  # random-init model
    cfg.model.detector.test_cfg.max_per_img = 10
    cfg.test_dataloader.dataset.data_root = str(synthetic_crowd_root)
    metrics = Runner.from_cfg(cfg).test()
    keys = ('pg_box', 'pg_mask', 'epg_box', 'epg_mask', 'compactness',
            'odi_box', 'odi_mask', 'vea_auc', 'deletion_auc',
            'insertion_auc', 'sec_per_explanation', 'num_objects')
    for key in keys:
        assert f'explain/{key}' in metrics
    assert metrics['explain/num_images'] == 2
    assert metrics['explain/num_objects'] > 0
    for key in keys:  # every object is "well detected" at match_iou=0
        assert not math.isnan(metrics[f'explain/{key}']), key
    assert (tmp_path / 'odam' / 'metrics.json').is_file()
    # the table and figure of the tool
    results = {'odam': dict(metrics={k.split('/')[-1]: v
                                     for k, v in metrics.items()},
                            curves=dict(deletion=[1, .5], insertion=[0, 1],
                                        vea=[.2, .1], vea_thresholds=[.1,
                                                                      .2]))}
    table = tool.format_table({'odam': results['odam']['metrics']})
    assert table.splitlines()[0].startswith('method') and 'ODAM' in table
    tool.plot_curves(results, str(tmp_path / 'curves.png'))
    assert (tmp_path / 'curves.png').stat().st_size > 0
