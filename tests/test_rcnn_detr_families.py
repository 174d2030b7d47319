"""ODAM on Cascade R-CNN, Mask R-CNN, Deformable DETR and DINO.

Tiny random-weight versions of MMDetection's COCO configs (ResNet-18, narrow
layers, 128 x 160 inputs). Independent truth: the detector's own ``predict``
output for the detections and the values of their scalars; plain
``torch.autograd.grad`` of each scalar recomputed from MMDetection's own
modules (``CascadeRoIHead._refine_roi``, ``forward_transformer`` + head,
``_mask_forward``), with each detection's candidate found by exhaustive search
over every raw candidate for the one whose score and box equal the detection's
(never the adapter's candidate tracking).
"""
import os.path as osp
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from mmdet.apis import init_detector
from mmdet.structures.bbox import bbox2roi, bbox_cxcywh_to_xyxy
from mmengine.config import Config, ConfigDict
from mmengine.utils import get_installed_path

import mmdet_odam  # noqa: F401
from mmdet_odam.apis import explain
from mmdet_odam.apis.explain import preprocess
from mmdet_odam.explainers import ODAM, build_adapter
from mmdet_odam.explainers.odam import paste_windows_nchw

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = {
    'cascade': 'configs/cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py',
    'mask': 'configs/mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    'deformable': 'configs/deformable_detr/'
                  'deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
    'dino': 'configs/dino/dino-4scale_r50_8xb2-12e_coco.py',
    'conditional': 'configs/conditional_detr/'
                   'conditional-detr_r50_8xb2-50e_coco.py',
    'dab': 'configs/dab_detr/dab-detr_r50_8xb2-50e_coco.py',
}
DETR_LIKE = ('deformable', 'dino', 'conditional', 'dab')
R18 = dict(type='ResNet', depth=18, num_stages=4, frozen_stages=-1,
           norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True,
           style='pytorch', init_cfg=None)
NUM_ATTRS = 5


def set_keys(node, values: dict) -> None:
    """Set every key of ``values`` wherever it occurs in a nested config."""
    if isinstance(node, dict):
        for key in list(node):
            if key in values:
                node[key] = values[key]
            else:
                set_keys(node[key], values)
    elif isinstance(node, (list, tuple)):
        for item in node:
            set_keys(item, values)


def tiny_config(family: str) -> Config:
    cfg = Config.fromfile(osp.join(ROOT, CONFIGS[family]))
    model = cfg.model
    if family in ('cascade', 'mask'):
        model.backbone = dict(R18, out_indices=(0, 1, 2, 3))
        set_keys(model, dict(out_channels=32, in_channels=32,
                             feat_channels=32, fc_out_channels=64,
                             conv_out_channels=32, num_classes=3))
        model.neck.in_channels = [64, 128, 256, 512]
        model.test_cfg.rpn.update(nms_pre=200, max_per_img=50)
        model.test_cfg.rcnn.max_per_img = 6
    else:
        multi_level = family in ('deformable', 'dino')
        model.backbone = dict(R18, out_indices=(1, 2, 3) if multi_level
                              else (3, ))
        # box sine embeddings are 4 x 128 wide: embed_dims stays 256
        set_keys(model, dict(feedforward_channels=64, num_classes=3))
        model.neck.in_channels = [128, 256, 512] if multi_level else [512]
        model.encoder.num_layers = 1
        model.decoder.num_layers = 2
        model.num_queries = 30
        model.test_cfg = dict(max_per_img=6)
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (160, 128)
    return cfg


def build(family: str, seed: int = 0):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = init_detector(tiny_config(family), None, device='cpu')
    model.dataset_meta = dict(classes=('a', 'b', 'c'))
    return model.eval()


@pytest.fixture(scope='module')
def models():
    return {family: build(family) for family in CONFIGS}


@pytest.fixture(scope='module')
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 150, 3), dtype=np.uint8)
    img[30:90, 40:80] = (200, 40, 40)
    return img


def _signed(boxes: torch.Tensor) -> torch.Tensor:
    return boxes * boxes.new_tensor([-1., -1., 1., 1.])


def _clip(boxes: torch.Tensor, img_shape) -> torch.Tensor:
    out = boxes.clone()
    out[:, 0::2] = out[:, 0::2].clamp(0, img_shape[1])
    out[:, 1::2] = out[:, 1::2].clamp(0, img_shape[0])
    return out


def _find(scores: torch.Tensor, boxes: torch.Tensor, score: float,
          box: torch.Tensor) -> int:
    """Index of the candidate with this score and (clipped, input-pixel)
    box; candidates flattened to rows."""
    hit = ((scores - score).abs() < 1e-5) & \
        ((boxes - box).abs().amax(dim=1) < 1e-2)
    assert int(hit.sum()) >= 1, 'detection not found among candidates'
    return int(hit.nonzero()[0, 0])


def reference_scalars(family: str, model, inputs, samples, detections,
                      feature: str = 'neck'):
    """(leaves, Y) with Y (N, 5) the detections' scalars recomputed from
    MMDetection's own modules, each candidate found by exhaustive search;
    the leaves are the neck outputs or (``'backbone'``) the backbone stages
    run through the neck."""
    meta = samples[0].metainfo
    img_shape = meta['img_shape']
    scale = detections.bboxes.new_tensor(meta['scale_factor']).repeat(2)
    targets = detections.bboxes * scale  # input pixels
    if feature == 'backbone':
        leaves = [s.detach().requires_grad_() for s in model.backbone(inputs)]
        feats = list(model.neck(tuple(leaves)))
    else:
        feats = leaves = [f.detach().requires_grad_()
                          for f in model.extract_feat(inputs)]
    if family in ('cascade', 'mask'):
        with torch.no_grad():
            proposals = model.rpn_head.predict(
                tuple(f.detach() for f in feats), samples, rescale=False)
        rois = bbox2roi([proposals[0].bboxes])
        roi_head = model.roi_head
        if family == 'cascade':
            final_rois, cls_scores, bbox_preds = roi_head._refine_roi(
                tuple(feats), rois, [meta], (len(rois), ))
            final_rois, logits, deltas = (final_rois[0], cls_scores[0],
                                          bbox_preds[0])
            head = roi_head.bbox_head[-1]
        else:
            head = roi_head.bbox_head
            logits, deltas = head(roi_head.bbox_roi_extractor(
                tuple(feats), rois))
            final_rois = rois
        num_classes = head.num_classes
        probs = logits.softmax(-1)[:, :-1]
        decoded = head.bbox_coder.decode(
            final_rois[:, 1:].repeat_interleave(num_classes, 0),
            deltas.reshape(len(deltas), -1, 4).expand(
                -1, num_classes, 4).reshape(-1, 4)).view(-1, num_classes, 4)
        rows = []
        for k in range(len(detections)):
            label = int(detections.labels[k])
            r = _find(probs[:, label].detach(),
                      _clip(decoded[:, label].detach(), img_shape),
                      float(detections.scores[k]), targets[k])
            rows.append(torch.cat([probs[r, label, None],
                                   _signed(decoded[r, label])]))
        return leaves, torch.stack(rows)
    head_in = model.forward_transformer(tuple(feats), samples)
    cls, boxes = model.bbox_head(head_in['hidden_states'],
                                 head_in['references'])
    probs = cls[-1][0].sigmoid()
    h, w = img_shape
    xyxy = bbox_cxcywh_to_xyxy(boxes[-1][0]) * boxes.new_tensor([w, h, w, h])
    rows = []
    for k in range(len(detections)):
        label = int(detections.labels[k])
        q = _find(probs[:, label].detach(), _clip(xyxy.detach(), img_shape),
                  float(detections.scores[k]), targets[k])
        rows.append(torch.cat([probs[q, label, None], _signed(xyxy[q])]))
    return leaves, torch.stack(rows)


def pasted_gradients(pieces, state, img_idx: int = 0) -> dict:
    """pair index -> list of full-size gradients per level (None: none)."""
    out: dict = {}
    for piece in pieces:
        size = state.activations[piece.level].shape[-2:]
        full = paste_windows_nchw(piece.grads, piece.offsets, size)
        for row, pair in enumerate(piece.pair_index.tolist()):
            out.setdefault(pair, [None] * len(state.activations))
            out[pair][piece.level] = full[row]
    return out


def _assert_grads_match(reference, grads, level_count):
    for level in range(level_count):
        ref = reference[level]
        got = grads[level] if grads is not None else None
        if ref is None or not bool(ref.any()):
            assert got is None or not bool(got.any())
            continue
        assert got is not None
        torch.testing.assert_close(got, ref[0], rtol=1e-4,
                                   atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize('family', list(CONFIGS))
def test_detections_and_scalars_are_the_models_own(family, models, image):
    """The adapter's detections are ``predict()``'s, and each detection's
    scalars are its score and (input-pixel) box."""
    model = models[family]
    inputs, samples = preprocess(model, image)
    with torch.no_grad():
        ref = model.predict(inputs, samples)[0].pred_instances
    adapter = build_adapter(model, 'neck')
    with torch.enable_grad():
        state = adapter.forward(inputs, samples)
        scalars = adapter.candidate_scalars(state, 0).detach()
    res = state.results[0]
    assert len(res) == len(ref) > 0
    torch.testing.assert_close(res.bboxes, ref.bboxes)
    torch.testing.assert_close(res.scores, ref.scores)
    assert torch.equal(res.labels, ref.labels)
    meta = samples[0].metainfo
    scale = ref.bboxes.new_tensor(meta['scale_factor']).repeat(2)
    torch.testing.assert_close(scalars[:, 0], ref.scores, rtol=1e-5,
                               atol=1e-6)
    boxes = _clip(_signed(scalars[:, 1:]), meta['img_shape']) / scale
    torch.testing.assert_close(boxes, ref.bboxes, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize('family', list(CONFIGS))
def test_exact_gradients_equal_autograd(family, models, image):
    """Every attribute's gradient on every neck level equals plain autograd
    of the scalar recomputed from MMDetection's modules (Cascade: through
    every stage's RoIAlign and RoI refinement)."""
    model = models[family]
    inputs, samples = preprocess(model, image)
    adapter = build_adapter(model, 'neck')
    # R-CNNs: RoIAlign's adjoint per stage, exact
    assert adapter.has_fast_path() == (family in ('mask', 'cascade'))
    dets = [0, 1]
    with torch.enable_grad():
        state = adapter.forward(inputs, samples)
        pieces = adapter.exact_gradients(state, 0, dets,
                                         list(range(NUM_ATTRS)))
        fast = pasted_gradients(adapter.fast_gradients(
            state, 0, dets, list(range(NUM_ATTRS))) or [], state)
        leaves, ref = reference_scalars(family, model, inputs, samples,
                                        state.results[0][dets])
        torch.testing.assert_close(
            adapter.candidate_scalars(state, 0)[dets].detach(), ref.detach(),
            rtol=1e-5, atol=1e-4)
        got = pasted_gradients(pieces, state)
        levels = set()
        for k, det in enumerate(dets):
            for attr in range(NUM_ATTRS):
                reference = torch.autograd.grad(
                    ref[k, attr], leaves, retain_graph=True,
                    allow_unused=True)
                levels |= {lvl for lvl, g in enumerate(reference)
                           if g is not None and bool(g.any())}
                _assert_grads_match(reference,
                                    got.get(det * NUM_ATTRS + attr),
                                    len(leaves))
                if adapter.has_fast_path():
                    _assert_grads_match(reference,
                                        fast.get(det * NUM_ATTRS + attr),
                                        len(leaves))
    if family in DETR_LIKE:  # attention reads every level
        assert levels == set(range(len(leaves)))


def test_mask_target_is_the_mean_mask_logit(models, image):
    """score_target='mask': the score column is the mean of the mask head's
    logits of the detected class on the detection's box (as MMDetection
    predicts masks), and its gradient is autograd's."""
    model = models['mask']
    inputs, samples = preprocess(model, image)
    adapter = build_adapter(model, 'neck', score_target='mask')
    assert not adapter.has_fast_path()
    with torch.no_grad():  # MMDetection's boxes in input pixels
        ref = model.predict(inputs, samples, rescale=False)[0].pred_instances
    dets = [0, 1, 2]
    with torch.enable_grad():
        state = adapter.forward(inputs, samples)
        scalars = adapter.candidate_scalars(state, 0)
        pieces = adapter.exact_gradients(state, 0, dets, [0])
        leaves = [f.detach().requires_grad_()
                  for f in model.extract_feat(inputs)]
        mask_preds = model.roi_head._mask_forward(
            tuple(leaves), bbox2roi([ref.bboxes[dets]]))['mask_preds']
        got = pasted_gradients(pieces, state)
        for k, det in enumerate(dets):
            mean = mask_preds[k, int(ref.labels[det])].mean()
            torch.testing.assert_close(scalars[det, 0].detach(),
                                       mean.detach(), rtol=1e-5, atol=1e-5)
            reference = torch.autograd.grad(mean, leaves, retain_graph=True,
                                            allow_unused=True)
            _assert_grads_match(reference, got.get(det * NUM_ATTRS),
                                len(leaves))
    out = explain(model, image, explainer=ODAM(score_target='mask'),
                  targets=('score', 'x2'), score_thr=0.0)
    maps = out.pred_instances.heatmaps
    assert len(out.pred_instances) == len(ref)
    assert maps.targets == ('score', 'x2')


@pytest.mark.parametrize('family', ['cascade', *DETR_LIKE])
def test_mask_target_refused_in_one_line(family, models):
    with pytest.raises(ValueError) as error:
        build_adapter(models[family], 'neck', score_target='mask')
    assert '\n' not in str(error.value) and 'mask' in str(error.value)


def test_mask_target_needs_a_mask_head(image):
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs/faster_rcnn/faster-rcnn_tiny_synthetic-crowd.py'))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        faster = init_detector(cfg, None, device='cpu').eval()
    with pytest.raises(ValueError, match='needs a mask head') as error:
        build_adapter(faster, 'neck', score_target='mask')
    assert '\n' not in str(error.value)


def test_cascade_pre_nms_and_locations(models, image):
    """Cascade's NMS input: every (last-stage RoI, class) scoring above the
    threshold, with MMDetection's own score and box; the final detections
    are among them; every RoI is a location."""
    model = models['cascade']
    inputs, samples = preprocess(model, image)
    adapter = build_adapter(model, 'neck')
    with torch.enable_grad():
        state = adapter.forward(inputs, samples)
    cands = adapter.pre_nms_candidates(state, 0)
    res = state.results[0]
    key = cands.cand_roi * 3 + cands.labels
    for k in range(len(res)):
        hit = (key == res.cand_roi[k] * 3 + res.labels[k]).nonzero()[:, 0]
        assert len(hit) == 1
        torch.testing.assert_close(cands.scores[hit[0]], res.scores[k])
        torch.testing.assert_close(cands.bboxes[hit[0]], res.bboxes[k])
    thr = model.roi_head.test_cfg.score_thr
    assert bool((cands.scores > thr).all())
    locations = adapter.candidate_locations(state, 0)
    assert list(locations.keys()) == ['cand_roi']
    assert len(locations) == len(state.extras['stage_rois'][0][0])
    # the candidates' scalars: their pre-NMS score (the model's own)
    with torch.enable_grad():
        state.results[0] = cands
        scalars = adapter.candidate_scalars(state, 0).detach()
    torch.testing.assert_close(scalars[:, 0], cands.scores, rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize('family', DETR_LIKE)
def test_detr_like_candidates(family, models, image):
    model = models[family]
    inputs, samples = preprocess(model, image)
    adapter = build_adapter(model, 'neck')
    with torch.enable_grad():
        state = adapter.forward(inputs, samples)
    locations = adapter.candidate_locations(state, 0)
    assert torch.equal(locations.cand_query, torch.arange(30))
    with pytest.raises(ValueError, match='no NMS'):
        adapter.pre_nms_candidates(state, 0)


def test_backbone_feature_cascade(models, image):
    """Cascade on feature='backbone' (exact path): every attribute's
    gradient on the ResNet stages equals autograd through neck and stages."""
    model = models['cascade']
    inputs, samples = preprocess(model, image)
    adapter = build_adapter(model, 'backbone')
    assert not adapter.has_fast_path()
    with torch.enable_grad():
        state = adapter.forward(inputs, samples)
        pieces = adapter.exact_gradients(state, 0, [0], list(range(5)))
        leaves, ref = reference_scalars('cascade', model, inputs, samples,
                                        state.results[0][[0]], 'backbone')
        got = pasted_gradients(pieces, state)
        for attr in range(NUM_ATTRS):
            reference = torch.autograd.grad(ref[0, attr], leaves,
                                            retain_graph=True,
                                            allow_unused=True)
            _assert_grads_match(reference, got.get(attr), len(leaves))
    assert state.strides == [4, 8, 16, 32]


def test_backbone_feature_detr_like(models, image):
    """feature='backbone': the ResNet stages through the neck and the
    transformer; the score's gradient is autograd's."""
    model = models['dino']
    inputs, samples = preprocess(model, image)
    adapter = build_adapter(model, 'backbone')
    with torch.enable_grad():
        state = adapter.forward(inputs, samples)
        pieces = adapter.exact_gradients(state, 0, [0], [0])
        leaves = [s.detach().requires_grad_() for s in model.backbone(inputs)]
        head_in = model.forward_transformer(model.neck(tuple(leaves)),
                                            samples)
        cls, _ = model.bbox_head(head_in['hidden_states'],
                                 head_in['references'])
        res = state.results[0]
        score = cls[-1][0].sigmoid()[res.cand_query[0], res.labels[0]]
        torch.testing.assert_close(score.detach(), res.scores[0])
        reference = torch.autograd.grad(score, leaves, allow_unused=True)
    assert state.strides == [8, 16, 32]
    _assert_grads_match(reference, pasted_gradients(pieces, state)[0],
                        len(leaves))


@pytest.mark.parametrize('family', ['cascade', 'deformable'])
def test_explain_api_runs(family, models, image):
    """explain() end to end; on Cascade the default (batched) maps equal
    method='exact' (windows of several stages summed per level)."""
    targets = ('score', 'x1', 'y2', 'combined')
    out = explain(models[family], image, targets=targets, score_thr=0.0)
    pred = out.pred_instances
    assert len(pred) > 0 and pred.heatmaps.targets == targets
    maps = pred.heatmaps.to_tensor()
    assert maps.shape == (len(pred), len(targets), *image.shape[:2])
    assert float(maps.max()) <= 1 + 1e-6 and float(maps.min()) >= 0.0
    if family == 'cascade':
        exact = explain(models[family], image, targets=targets,
                        explainer=ODAM(method='exact'), score_thr=0.0)
        torch.testing.assert_close(
            maps, exact.pred_instances.heatmaps.to_tensor(), rtol=1e-4,
            atol=1e-4)


def test_tools_explain_on_cascade(tmp_path, models, image):
    """tools/explain.py on a Cascade R-CNN config and checkpoint."""
    import cv2
    config = tmp_path / 'cascade_tiny.py'
    tiny_config('cascade').dump(str(config))
    checkpoint = tmp_path / 'cascade.pth'
    torch.save({'state_dict': models['cascade'].state_dict(),
                'meta': {'dataset_meta': {'classes': ('a', 'b', 'c')}}},
               checkpoint)
    img_path = tmp_path / 'img.png'
    cv2.imwrite(str(img_path), image)
    out = tmp_path / 'out'
    res = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools/explain.py'), str(config),
         str(checkpoint), str(img_path), '--out-dir', str(out), '--device',
         'cpu', '--score-thr', '0', '--targets', 'score', 'x1'],
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert any(p.name.startswith('img') for p in out.iterdir())


def test_odam_nms_refused_for_cascade(models):
    from mmdet_odam.models import enable_odam_nms
    with pytest.raises(NotImplementedError) as error:
        enable_odam_nms(models['cascade'])
    assert 'CascadeRoIHead' in str(error.value)
    assert '\n' not in str(error.value)


@pytest.mark.parametrize('family', ['cascade', 'dino'])
def test_any_candidate_selectors(family, models, image):
    """explain(candidates=...): Cascade's suppressed candidates (from its
    last stage's NMS input) and DINO's best query for a given box; each row's
    score is its candidate's own (recomputed from the adapter's scalars)."""
    from mmdet_odam.explainers import MatchedCandidates, SuppressedCandidates
    model = models[family]
    if family == 'cascade':
        selector = SuppressedCandidates(iou_thr=0.3)
    else:
        selector = MatchedCandidates(boxes=[[20., 20., 100., 90.]],
                                     labels=[1])
    out = explain(model, image, targets=('score', ), score_thr=0.0,
                  candidates=selector)
    pred = out.pred_instances
    assert len(pred) > 0
    assert pred.heatmaps.to_tensor().shape[:2] == (len(pred), 1)
    if family == 'dino':
        assert bool((pred.labels == 1).all())


@pytest.mark.parametrize('family', ['cascade', 'dino'])
def test_odam_train_refused_in_one_line(family, models):
    from mmdet_odam.models import OdamTrainLoss, install_odam_train
    model = models[family]
    with pytest.raises(TypeError, match='Odam-Train does not support') as e:
        install_odam_train(model, OdamTrainLoss())
    assert '\n' not in str(e.value)
    assert not hasattr(model, '_odam_original_loss')


@pytest.mark.parametrize('family', ['mask', 'deformable'])
def test_odam_train_reaches_mask_rcnn_and_deformable(family):
    """Odam-Train on Mask R-CNN (the box branch's StandardRoIHead losses) and
    Deformable DETR: the terms exist, are finite and reach the backbone."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    from mmdet_odam.models import OdamTrainLoss, install_odam_train
    model = build(family).train()
    install_odam_train(model, OdamTrainLoss())
    shape = (128, 160)
    sample = DetDataSample(metainfo=dict(
        img_shape=shape, ori_shape=shape, pad_shape=shape,
        batch_input_shape=shape, scale_factor=(1., 1.)))
    boxes = torch.tensor([[10., 10., 60., 90.], [40., 20., 100., 100.]])
    masks = np.zeros((2, *shape), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
        masks[k, y1:y2, x1:x2] = 1
    sample.gt_instances = InstanceData(bboxes=boxes,
                                       labels=torch.tensor([0, 1]),
                                       masks=BitmapMasks(masks, *shape))
    torch.manual_seed(1)
    losses = model.loss(torch.randn(1, 3, *shape), [sample])
    odam = losses['loss_odam_con'] + losses['loss_odam_sep']
    assert bool(torch.isfinite(odam)) and float(odam) > 0
    grad, = torch.autograd.grad(odam, model.backbone.conv1.weight)
    assert float(grad.abs().sum()) > 0


def test_tools_explain_score_target_mask_refused_for_cascade(tmp_path,
                                                            models, image,
                                                            capsys):
    """--score-target mask on a detector without a mask target: one line,
    nothing written."""
    import importlib.util

    import cv2
    spec = importlib.util.spec_from_file_location(
        '_explain_tool', osp.join(ROOT, 'tools/explain.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    config = tmp_path / 'cascade_tiny.py'
    tiny_config('cascade').dump(str(config))
    checkpoint = tmp_path / 'cascade.pth'
    torch.save({'state_dict': models['cascade'].state_dict()}, checkpoint)
    img_path = tmp_path / 'img.png'
    cv2.imwrite(str(img_path), image)
    out = tmp_path / 'out'
    code = tool.main([str(config), str(checkpoint), str(img_path),
                      '--out-dir', str(out), '--device', 'cpu',
                      '--score-target', 'mask'])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith('error: score_target must be')
    assert not out.exists()
