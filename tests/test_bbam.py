"""BBAM baseline: its math against hand values and scipy, the exact candidate
read on new inputs against the detector's own outputs, the optimised masks
against the detector run on the masked image, and the registry / API / tools.

Trained tiny FCOS (``checkpoints/fcos_tiny_synthetic-crowd.pth``) for the
optimisation; random-weight tiny Faster R-CNN for its candidate path."""
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.apis import init_detector
from mmdet.structures.bbox import bbox_overlaps
from mmengine.config import Config
from mmengine.structures import InstanceData
from scipy.ndimage import gaussian_filter

import mmdet_odam  # noqa: F401
from mmdet_odam.apis import build_explainer, explain, init_explained_detector
from mmdet_odam.apis.explain import preprocess
from mmdet_odam.apis.export import load_heatmaps_npz
from mmdet_odam.explainers import BBAM, build_adapter
from mmdet_odam.explainers.bbam import (bbam_loss, blend, gaussian_blur,
                                        upsample_masks)
from mmdet_odam.explainers.heatmap import TRUNCATE

ROOT = Path(__file__).resolve().parents[1]
FCOS = str(ROOT / 'configs/fcos/fcos_tiny_synthetic-crowd.py')
FCOS_CKPT = str(ROOT / 'checkpoints/fcos_tiny_synthetic-crowd.pth')
RCNN = str(ROOT / 'configs/faster_rcnn/faster-rcnn_tiny_synthetic-crowd.py')
DETR = str(ROOT / 'configs/detr/detr_tiny_synthetic-crowd.py')

#: What "keeps the detection" means in these tests (and the README).
KEEP_IOU, KEEP_SCORE = 0.9, 0.1


def _extents_to_boxes(scalars: torch.Tensor) -> torch.Tensor:
    """(N, 5) [score, -x1, -y1, x2, y2] -> (N, 4) boxes."""
    return scalars[:, 1:] * scalars.new_tensor([-1., -1., 1., 1.])


@pytest.fixture(scope='module')
def fcos():
    return init_explained_detector(FCOS, FCOS_CKPT, 'cpu').eval()


@pytest.fixture(scope='module')
def rcnn():
    torch.manual_seed(0)
    cfg = Config.fromfile(RCNN)
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.rcnn.max_per_img = 4
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    cfg.model.test_cfg.rpn.max_per_img = 50
    return init_detector(cfg, None, device='cpu').eval()


@pytest.fixture(scope='module')
def crowd_image(synthetic_crowd_root):
    return str(synthetic_crowd_root / 'images' / 'val' / '000000.png')


@pytest.fixture(scope='module')
def fcos_state(fcos, crowd_image):
    """(adapter, state, inputs, sample, ids of the top two detections)."""
    inputs, samples = preprocess(fcos, crowd_image)
    adapter = build_adapter(fcos)
    with torch.no_grad():
        state = adapter.forward(inputs, samples, keep_graph=False)
    scores = state.results[0].scores
    assert float(scores.max()) > 0.4  # the trained model finds people
    return adapter, state, inputs, samples[0], scores.argsort(
        descending=True)[:2].tolist()


def _random_image(size=(96, 128), seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    img[size[0] // 3:size[0] * 5 // 6, size[1] // 3:size[1] // 2] = \
        (200, 40, 40)
    return img


# -- pure functions ------------------------------------------------------------
def test_gaussian_blur_equals_scipy_and_keeps_constants():
    x = torch.rand((2, 3, 20, 31), generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64)
    for sigma in (0.8, 2.0):
        radius = math.ceil(TRUNCATE * sigma)  # our truncation, by hand
        ref = gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma),
                              mode='nearest', radius=(0, 0, radius, radius))
        assert np.allclose(gaussian_blur(x, sigma).numpy(), ref, atol=1e-10)
    const = torch.full((1, 3, 9, 9), 0.7)
    assert torch.allclose(gaussian_blur(const, 3.0), const, atol=1e-6)
    assert torch.equal(gaussian_blur(x, 0.0), x)


def test_upsample_blend_and_loss_by_hand():
    coarse = torch.tensor([[[[0., 1.], [1., 0.]]]])
    up = upsample_masks(coarse, (4, 4))
    # align_corners=False: the corner pixels keep the corner cells' values,
    # an inner pixel (1, 1) is 3/4 of cell (0, 0) and 1/4 of the others...
    assert up.shape == (1, 1, 4, 4)
    assert up[0, 0, 0, 0] == 0 and up[0, 0, 0, 3] == 1
    assert torch.isclose(up[0, 0, 1, 1], torch.tensor(
        0.75 * 0.75 * 0 + 0.75 * 0.25 * 1 * 2 + 0.25 * 0.25 * 0))
    image, other = torch.full((1, 3, 4, 4), 2.), torch.full((1, 3, 4, 4), -1.)
    mixed = blend(image, other, up)
    assert torch.allclose(mixed, up * 2 + (1 - up) * -1)
    # box (10, 20, 30, 60): width 20, height 40; masked box (12, 20, 30, 50)
    ref = torch.tensor([[0.8, -10., -20., 30., 60.]])
    new = torch.tensor([[0.5, -12., -20., 30., 50.]])
    masks = torch.full((1, 1, 2, 2), 0.25)
    loss = bbam_loss(new, ref, masks, l1_weight=2., box_weight=3.,
                     score_weight=5.)
    assert torch.allclose(loss, torch.tensor(
        [2 * 0.25 + 3 * (2 / 20 + 10 / 40) + 5 * 0.3]))


# -- the exact candidate on new inputs -------------------------------------------
def test_dense_candidates_on_unmasked_inputs_are_the_detections(
        fcos, fcos_state):
    adapter, state, inputs, sample, _ = fcos_state
    ids = list(range(len(state.results[0])))
    got = adapter.candidate_scalars_on_inputs(
        inputs.expand(len(ids), -1, -1, -1), state, 0, ids)
    # the ODAM forward's own scalars of the same candidates
    with torch.enable_grad():
        graph_state = adapter.forward(inputs, [sample])
        ref = adapter.candidate_scalars(graph_state, 0).detach()
    assert torch.allclose(got, ref, atol=1e-5)
    # and the detector's final outputs (scores; boxes in input pixels)
    res = state.results[0]
    assert torch.allclose(got[:, 0], res.scores, atol=1e-5)
    scale = res.bboxes.new_tensor(sample.scale_factor).repeat(2)
    assert torch.allclose(_extents_to_boxes(got).clamp(0, 256),
                          res.bboxes * scale, atol=1e-3)


def test_dense_candidate_on_a_masked_input_read_by_hand(fcos, fcos_state):
    """Score and box of the candidate's own (level, index) cell on its own
    row (blurred, then unmasked), from the head's raw outputs computed here."""
    adapter, state, inputs, _, ids = fcos_state
    rows = torch.cat([gaussian_blur(inputs, 4.0), inputs])
    got = adapter.candidate_scalars_on_inputs(rows, state, 0, ids)
    with torch.no_grad():
        cls, reg, ctr = fcos.bbox_head(fcos.extract_feat(rows))
    res = state.results[0]
    priors = fcos.bbox_head.prior_generator.grid_priors(
        [c.shape[-2:] for c in cls], device=inputs.device)
    for k, det in enumerate(ids):
        level, index = int(res.cand_level[det]), int(res.cand_index[det])
        row, col = divmod(index, cls[level].shape[-1])  # one prior per cell
        label = int(res.labels[det])
        score = cls[level][k, label, row, col].sigmoid() * \
            ctr[level][k, 0, row, col].sigmoid()
        px, py = priors[level][index, :2]
        left, top, right, bottom = reg[level][k, :, row, col]
        box = torch.stack([px - left, py - top, px + right, py + bottom])
        assert torch.isclose(got[k, 0], score, atol=1e-5)
        assert torch.allclose(_extents_to_boxes(got[k:k + 1])[0], box,
                              atol=1e-3)
    # not the unmasked values: the masked image was read
    assert abs(float(got[0, 0] - res.scores[ids[0]])) > 1e-3


def test_rcnn_candidate_keeps_its_roi_on_a_masked_input(rcnn):
    """Faster R-CNN: the detection's RoI pooled from the masked image's
    features, against MMDetection's own RoI head on that single proposal."""
    inputs, samples = preprocess(rcnn, _random_image())
    adapter = build_adapter(rcnn)
    with torch.no_grad():
        state = adapter.forward(inputs, samples, keep_graph=False)
    res = state.results[0]
    ids = list(range(len(res)))
    assert len(ids) >= 2
    unmasked = adapter.candidate_scalars_on_inputs(
        inputs.expand(len(ids), -1, -1, -1), state, 0, ids)
    assert torch.allclose(unmasked[:, 0], res.scores, atol=1e-5)
    masked = gaussian_blur(inputs, 3.0)
    # even rows masked, odd rows not: each candidate reads its own row
    rows = torch.cat([masked if k % 2 == 0 else inputs for k in ids])
    got = adapter.candidate_scalars_on_inputs(rows, state, 0, ids)
    meta = samples[0].metainfo
    with torch.no_grad():
        for k in ids:
            feats = rcnn.extract_feat(rows[k:k + 1])
            roi = state.extras['det_rois'][0][k, 1:]
            out = rcnn.roi_head.predict_bbox(
                feats, [meta], [InstanceData(bboxes=roi[None])], None,
                rescale=False)[0]  # no test cfg: every class, no NMS
            label = int(res.labels[k])
            assert torch.isclose(got[k, 0], out.scores[0, label], atol=1e-5)
            box = out.bboxes.view(-1, 4)[label]  # clipped to the image
            height, width = meta['img_shape']
            ours = _extents_to_boxes(got[k:k + 1])[0]
            ours = torch.stack([ours[0].clamp(0, width),
                                ours[1].clamp(0, height),
                                ours[2].clamp(0, width),
                                ours[3].clamp(0, height)])
            assert torch.allclose(ours, box, atol=1e-3)
    assert torch.allclose(got[1::2], unmasked[1::2], atol=1e-5)
    assert not torch.allclose(got[0::2, 0], unmasked[0::2, 0], atol=1e-4)


# -- the optimisation ------------------------------------------------------------
def test_optimised_mask_keeps_the_detection_and_is_small(fcos, fcos_state):
    """The detector's own predict on the masked image (built here) still
    finds the box (IoU >= KEEP_IOU, same class, score within KEEP_SCORE)."""
    adapter, state, inputs, sample, ids = fcos_state
    bbam = BBAM(num_steps=40, chunk_size=2)
    masks, ref, final = bbam.optimise_masks(adapter, state, inputs, 0,
                                            sample.metainfo, ids)
    height, width = sample.img_shape
    assert masks.shape == (len(ids), height, width)
    assert float(masks.min()) >= 0 and float(masks.max()) <= 1
    assert float(masks.mean()) < 0.2  # much smaller than the image
    res = state.results[0]
    blurred = gaussian_blur(inputs[..., :height, :width], bbam.blur_sigma)
    for k, det in enumerate(ids):
        masked = inputs.clone()
        masked[..., :height, :width] = masks[k] * inputs[..., :height, :width]\
            + (1 - masks[k]) * blurred
        with torch.no_grad():
            pred = fcos.predict(masked, [sample.clone()])[0].pred_instances
        same = pred[pred.labels == res.labels[det]]
        iou = bbox_overlaps(res.bboxes[det:det + 1], same.bboxes)[0]
        best = int(iou.argmax())
        assert float(iou[best]) >= KEEP_IOU
        assert abs(float(same.scores[best] - res.scores[det])) <= KEEP_SCORE
        # BBAM's own report of the candidate agrees with the detector
        assert torch.isclose(final[k, 0], same.scores[best], atol=1e-4)
    # the optimised scalars start as the candidates' own (ODAM's forward)
    with torch.enable_grad():
        graph_state = adapter.forward(inputs, [sample])
        own = adapter.candidate_scalars(graph_state, 0).detach()[ids]
    assert torch.allclose(ref, own, atol=1e-4)
    assert torch.allclose(ref[:, 0], res.scores[ids], atol=1e-5)


def test_weights_drive_the_mask(fcos_state):
    adapter, state, inputs, sample, ids = fcos_state
    meta = sample.metainfo
    kept = BBAM(num_steps=8, l1_weight=0.0).optimise_masks(
        adapter, state, inputs, 0, meta, ids[:1])[0]
    assert float(kept.min()) > 0.99  # nothing asks it to shrink
    erased = BBAM(num_steps=15, box_weight=0.0, score_weight=0.0,
                  lr=0.1).optimise_masks(adapter, state, inputs, 0, meta,
                                         ids[:1])[0]
    assert float(erased.max()) < 0.01  # nothing asks it to keep anything


def test_explain_api_deterministic_and_leaves_the_model(fcos, crowd_image):
    params = list(fcos.parameters())
    fcos.train()
    cfg = dict(type='BBAM', num_steps=3, mask_size=(8, 6),
               perturbation='constant')
    first = explain(fcos, crowd_image, explainer=cfg,
                    targets=('score', 'combined'))
    assert fcos.training  # mode restored by the API
    fcos.eval()
    with torch.no_grad():  # as MMEngine's test loop calls explainers
        second = explain(fcos, crowd_image, explainer=build_explainer(cfg),
                         targets=('score', 'combined'))
    assert all(p.grad is None for p in params)
    maps = first.pred_instances.heatmaps.to_tensor()
    num = len(first.pred_instances)
    assert num > 0 and maps.shape == (num, 2, 128, 128)
    assert torch.equal(maps, second.pred_instances.heatmaps.to_tensor())
    assert torch.equal(maps[:, 0], maps[:, 1])  # one map per detection
    assert first.metainfo['targets'] == ('score', 'combined')
    assert float(maps.amax(dim=(-1, -2)).min()) == pytest.approx(1.0)
    # an image without detections above the threshold
    none = explain(fcos, crowd_image, explainer=cfg, targets='score',
                   score_thr=1.1)
    assert len(none.pred_instances) == 0
    assert none.pred_instances.heatmaps.to_tensor().shape == (0, 1, 128, 128)


def test_rcnn_through_the_api(rcnn):
    image = _random_image()
    out = explain(rcnn, image, explainer=dict(type='BBAM', num_steps=2,
                                              mask_size=4, chunk_size=3),
                  targets='score', score_thr=0.0)
    num = len(out.pred_instances)
    maps = out.pred_instances.heatmaps.to_tensor()
    assert num == 4 and maps.shape == (num, 1, 96, 128)
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert all(p.grad is None for p in rcnn.parameters())
    # the model's own detections, unchanged
    with torch.no_grad():
        inputs, samples = preprocess(rcnn, image)
        pred = rcnn.predict(inputs, samples)[0].pred_instances
    assert torch.allclose(out.pred_instances.bboxes, pred.bboxes)


@pytest.mark.parametrize('bad', [
    dict(num_steps=-1), dict(num_steps=2.5), dict(mask_size=0),
    dict(mask_size=(4, 0, 2)), dict(lr=0), dict(l1_weight=-1.),
    dict(box_weight=float('nan')), dict(perturbation='noise'),
    dict(blur_sigma=-2), dict(chunk_size=0), dict(chunk_size=True)])
def test_bad_options_are_one_line_errors(bad):
    with pytest.raises(ValueError) as err:
        BBAM(**bad)
    assert '\n' not in str(err.value)
    assert next(iter(bad)) in str(err.value)


def test_unsupported_family_and_targets_one_line(fcos, fcos_state):
    _, _, inputs, sample, _ = fcos_state
    with pytest.raises(ValueError, match='unknown targets'):
        BBAM(num_steps=1).explain_batch(fcos, inputs, [sample],
                                        targets=('nope', ))
    torch.manual_seed(0)
    detr = init_detector(Config.fromfile(DETR), None, device='cpu').eval()
    inputs, samples = preprocess(detr, _random_image())
    with pytest.raises(TypeError) as err:
        BBAM(num_steps=1).explain_batch(detr, inputs, samples)
    assert 'BBAM does not support DETR' in str(err.value)
    assert '\n' not in str(err.value)


# -- tools -----------------------------------------------------------------------
def test_explain_tool_method_bbam(tmp_path, crowd_image, capsys):
    tool = str(ROOT / 'tools/explain.py')
    run = subprocess.run(
        [sys.executable, tool, FCOS, FCOS_CKPT, crowd_image, '--out-dir',
         str(tmp_path), '--method', 'bbam', '--bbam-steps', '1',
         '--bbam-mask-size', '4'], capture_output=True, text=True,
        timeout=300, cwd=str(ROOT))
    assert run.returncode == 0, run.stderr[-2000:]
    with np.load(tmp_path / '000000.npz') as saved:
        assert list(saved['targets']) == ['score']  # BBAM's default
        maps = load_heatmaps_npz(saved)
        assert maps.shape == (len(saved['scores']), 1, 128, 128)
    assert len(maps) > 0 and float(maps.max()) == pytest.approx(1, abs=1e-3)
    # a bad value: one line, nothing written (in-process: no second start-up)
    spec = importlib.util.spec_from_file_location('explain_bbam', tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([FCOS, FCOS_CKPT, crowd_image, '--out-dir',
                        str(tmp_path / 'bad'), '--method', 'bbam',
                        '--bbam-steps', '-3']) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error:')
    assert 'num_steps' in lines[0]
    assert module.main([FCOS, FCOS_CKPT, crowd_image, '--out-dir',
                        str(tmp_path / 'bad'), '--method', 'bbam',
                        '--suppressed']) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and 'final detections only' in lines[0]
    assert not (tmp_path / 'bad').exists()


def test_eval_tool_methods_bbam(synthetic_crowd_root, tmp_path):
    spec = importlib.util.spec_from_file_location(
        'eval_explanations_bbam', ROOT / 'tools/eval_explanations.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    root = str(synthetic_crowd_root)
    results = tool.main([
        FCOS, FCOS_CKPT, '--methods', 'bbam', '--bbam-steps', '2',
        '--bbam-mask-size', '4', '--num-images', '1', '--deletion-steps',
        '2', '--match-iou', '0.5', '--work-dir', str(tmp_path),
        '--cfg-options',
        f'test_dataloader.dataset.data_root={root}'])
    metrics = results['bbam']['metrics']
    assert metrics['num_images'] == 1
    assert results['bbam']['explainer'] == dict(
        type='BBAM', num_steps=2, mask_size=4, chunk_size=64)
    assert metrics['sec_per_explanation'] > 0
    assert not math.isnan(metrics['deletion_auc'])
    assert (tmp_path / 'explanation_table.json').is_file()
