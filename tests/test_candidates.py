"""Explaining candidates that are not final detections (issue 14, "any box").

The references never use the package's candidate tracking or scalars: every
candidate location's score for every class and its decoded box come straight
from the raw head outputs (``raw_candidates``), a selected row is found among
them by its box, and its map is ``ReLU(sum_k dY/dA_k * A_k)`` from a separate
``torch.autograd.grad`` call (``reference_map`` of the ODAM tests).
"""
import numpy as np
import pytest
import torch
from mmcv.ops import batched_nms
from mmdet.apis import init_detector
from mmdet.structures.bbox import bbox2roi, bbox_cxcywh_to_xyxy
from mmengine.config import Config

import mmdet_odam  # noqa: F401
from mmdet_odam.apis import explain
from mmdet_odam.apis.explain import preprocess
from mmdet_odam.explainers import (DRISE, ODAM, MatchedCandidates,
                                   OtherClasses, SuppressedCandidates)
from test_odam_explainer import CONFIGS, reference_map

NUM_CLASSES = 3
FAMILIES = ('fcos', 'faster_rcnn', 'detr')


def build_multiclass(family: str):
    torch.manual_seed(1)
    cfg = Config.fromfile(CONFIGS[family])
    if family == 'faster_rcnn':
        cfg.model.roi_head.bbox_head.num_classes = NUM_CLASSES
        cfg.model.test_cfg.rcnn.max_per_img = 12
    else:
        cfg.model.bbox_head.num_classes = NUM_CLASSES
        cfg.model.test_cfg.max_per_img = 12
    model = init_detector(cfg, None, device='cpu')
    if family == 'fcos':  # random regressions give ~1 px boxes: widen them
        with torch.no_grad():
            model.bbox_head.conv_reg.bias.add_(1.5)
    model.dataset_meta = dict(classes=('a', 'b', 'c'))
    return model.eval()


@pytest.fixture(scope='module')
def models():
    return {family: build_multiclass(family) for family in FAMILIES}


@pytest.fixture(scope='module')
def image():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    img[20:70, 30:60] = (40, 200, 40)
    img[40:90, 70:110] = (200, 40, 200)
    return img


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes (N, 4) with boxes (M, 4), by hand."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp(min=0).prod(-1)  # noqa
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def raw_candidates(family, model, inputs, samples):
    """Every candidate location's class scores and boxes from raw outputs.

    Returns:
        tuple: neck leaves, their strides, scores (L, K) with the graph,
        boxes (L, K, 4) in original-image pixels (clipped).
    """
    meta = samples[0].metainfo
    feats = [f.detach().requires_grad_() for f in model.extract_feat(inputs)]
    if family == 'fcos':
        head = model.bbox_head
        cls, reg, ctr = head(feats)
        priors = head.prior_generator.grid_priors(
            [c.shape[-2:] for c in cls], device=inputs.device)
        scores, boxes = [], []
        for lvl in range(len(feats)):
            prob = cls[lvl][0].permute(1, 2, 0).reshape(-1, NUM_CLASSES)
            centre = ctr[lvl][0].permute(1, 2, 0).reshape(-1, 1)
            scores.append(prob.sigmoid() * centre.sigmoid())
            box = head.bbox_coder.decode(
                priors[lvl], reg[lvl][0].permute(1, 2, 0).reshape(-1, 4))
            boxes.append(box[:, None].expand(-1, NUM_CLASSES, 4))
        scores, boxes = torch.cat(scores), torch.cat(boxes)
    elif family == 'faster_rcnn':
        with torch.no_grad():
            proposals = model.rpn_head.predict(tuple(feats), samples,
                                               rescale=False)
        rois = bbox2roi([proposals[0].bboxes])
        cls, reg = model.roi_head.bbox_head(
            model.roi_head.bbox_roi_extractor(feats, rois))
        scores = cls.softmax(-1)[:, :NUM_CLASSES]
        coder = model.roi_head.bbox_head.bbox_coder
        reg = reg.view(len(rois), NUM_CLASSES, 4)
        boxes = torch.stack([coder.decode(rois[:, 1:], reg[:, c])
                             for c in range(NUM_CLASSES)], dim=1)
    else:
        head_in = model.forward_transformer(tuple(feats), samples)
        cls, reg = model.bbox_head(head_in['hidden_states'])
        scores = cls[-1][0].softmax(-1)[:, :NUM_CLASSES]
        h, w = meta['img_shape']
        box = bbox_cxcywh_to_xyxy(reg[-1][0]) * reg.new_tensor([w, h, w, h])
        boxes = box[:, None].expand(-1, NUM_CLASSES, 4)
    scale = boxes.new_tensor(meta['scale_factor']).repeat(2)
    oh, ow = meta['ori_shape'][:2]
    boxes = boxes.detach() / scale
    boxes = torch.stack([boxes[..., 0].clamp(0, ow), boxes[..., 1].clamp(0, oh),
                         boxes[..., 2].clamp(0, ow), boxes[..., 3].clamp(0, oh)],
                        dim=-1)
    strides = [round(inputs.shape[-2] / f.shape[-2]) for f in feats]
    return feats, strides, scores, boxes


def locate(boxes: torch.Tensor, scores: torch.Tensor, label: int,
           box: torch.Tensor, score: float) -> int:
    """The one location whose class-``label`` box and score are these."""
    hit = ((boxes[:, label] - box).abs().amax(-1) < 1e-3) & \
        ((scores[:, label].detach() - score).abs() < 1e-5)
    assert int(hit.sum()) >= 1, 'candidate not among the raw outputs'
    return int(hit.nonzero()[0, 0])


def exact_odam():
    return ODAM(smooth='none', method='exact')


@pytest.mark.parametrize('family', FAMILIES)
def test_other_classes_of_a_detection_equal_autograd(family, models, image):
    """Each class of a detection's own candidate: score, box and map as the
    raw outputs give them for that class at that location."""
    model = models[family]
    dets = explain(model, image, targets=('score', ), score_thr=0.0,
                   explainer=exact_odam()).pred_instances
    assert len(dets) >= 2
    out = explain(model, image, explainer=exact_odam(), targets=('score', ),
                  score_thr=0.0,
                  candidates=OtherClasses(labels=[0, 1, 2], det_index=[0, 1]))
    rows = out.pred_instances
    assert rows.ref_index.tolist() == [0, 0, 0, 1, 1, 1]
    assert rows.labels.tolist() == [0, 1, 2, 0, 1, 2]
    inputs, samples = preprocess(model, image)
    feats, strides, scores, boxes = raw_candidates(family, model, inputs,
                                                   samples)
    for k in range(len(rows)):
        det = dets[int(rows.ref_index[k])]
        loc = locate(boxes, scores, int(det.labels), det.bboxes[0],
                     float(det.scores))
        label = int(rows.labels[k])
        assert float(rows.scores[k]) == pytest.approx(
            float(scores[loc, label]), abs=1e-5)
        torch.testing.assert_close(rows.bboxes[k], boxes[loc, label],
                                   atol=1e-3, rtol=0)
        if label == int(det.labels):  # its own class: the detection itself
            assert float(rows.scores[k]) == pytest.approx(float(det.scores),
                                                          abs=1e-6)
        expected = reference_map(feats, strides, scores[loc, label],
                                 samples[0].metainfo, retain_graph=True)
        assert torch.allclose(rows.heatmaps[k, 0], expected, atol=1e-4)


@pytest.mark.parametrize('family', ('fcos', 'faster_rcnn'))
def test_suppressed_candidates_are_what_nms_removed(family, models, image):
    """The pool is the one NMS ran on (MMDetection's NMS of it gives the
    final detections); each selected row overlaps its detection above the
    threshold, has its class, is not a detection, and its map is autograd's.
    """
    model = models[family]
    adapter_out = explain(model, image, explainer=exact_odam(),
                          targets=('score', ), score_thr=0.0)
    dets = adapter_out.pred_instances
    from mmdet_odam.explainers import build_adapter
    adapter = build_adapter(model)
    inputs, samples = preprocess(model, image)
    with torch.no_grad():
        state = adapter.forward(inputs, samples, keep_graph=False)
        pool = adapter.pre_nms_candidates(state, 0)
    test_cfg = model.test_cfg if family == 'fcos' else model.test_cfg.rcnn
    kept_boxes, keep = batched_nms(pool.bboxes, pool.scores, pool.labels,
                                   test_cfg.nms)
    kept_boxes = kept_boxes[:test_cfg.max_per_img]
    torch.testing.assert_close(kept_boxes[:, :4], dets.bboxes, atol=1e-3,
                               rtol=0)
    torch.testing.assert_close(kept_boxes[:, 4], dets.scores, atol=1e-5,
                               rtol=0)

    rows = explain(model, image, explainer=exact_odam(), targets=('score', ),
                   score_thr=0.0,
                   candidates=SuppressedCandidates(iou_thr=0.3)).pred_instances
    assert len(rows) > 0
    feats, strides, scores, boxes = raw_candidates(family, model, inputs,
                                                   samples)
    overlaps = iou(rows.bboxes, dets.bboxes)
    for k in range(len(rows)):
        ref = int(rows.ref_index[k])
        assert int(rows.labels[k]) == int(dets.labels[ref])
        same_class = dets.labels == rows.labels[k]
        # referred to the same-class detection it overlaps most
        assert float(rows.ref_iou[k]) == pytest.approx(
            float(overlaps[k][same_class].max()), abs=1e-5)
        assert float(overlaps[k, ref]) == pytest.approx(
            float(rows.ref_iou[k]), abs=1e-5) and float(rows.ref_iou[k]) > 0.3
        is_detection = ((dets.bboxes - rows.bboxes[k]).abs().amax(-1) < 1e-4) \
            & ((dets.scores - rows.scores[k]).abs() < 1e-6)
        assert not bool(is_detection.any())
    for k in range(min(3, len(rows))):
        label = int(rows.labels[k])
        loc = locate(boxes, scores, label, rows.bboxes[k],
                     float(rows.scores[k]))
        expected = reference_map(feats, strides, scores[loc, label],
                                 samples[0].metainfo, retain_graph=True)
        assert torch.allclose(rows.heatmaps[k, 0], expected, atol=1e-4)


@pytest.mark.parametrize('family', FAMILIES)
def test_matched_candidate_is_the_best_of_its_class(family, models, image):
    """For a given box and class: the highest-scoring location of that class
    among those overlapping it with IoU >= min_iou (else the most
    overlapping one), found over every raw candidate."""
    model = models[family]
    inputs, samples = preprocess(model, image)
    feats, strides, scores, boxes = raw_candidates(family, model, inputs,
                                                   samples)
    given = torch.tensor([[30., 20., 62., 72.], [70., 40., 110., 90.],
                          [0., 0., 3., 3.]])
    labels = [2, 1, 0]
    rows = explain(model, image, explainer=exact_odam(), targets=('score', ),
                   candidates=MatchedCandidates(given.numpy(), labels,
                                                min_iou=0.3)).pred_instances
    assert rows.ref_index.tolist() == [0, 1, 2]
    assert rows.labels.tolist() == labels
    for m, label in enumerate(labels):
        overlap = iou(boxes[:, label], given[m:m + 1])[:, 0]
        eligible = overlap >= 0.3
        if bool(eligible.any()):
            best = scores[:, label].detach().masked_fill(~eligible, -1).max()
            assert float(rows.scores[m]) == pytest.approx(float(best),
                                                          abs=1e-5)
        else:
            assert float(rows.ref_iou[m]) == pytest.approx(
                float(overlap.max()), abs=1e-5)
        loc = locate(boxes, scores, label, rows.bboxes[m],
                     float(rows.scores[m]))
        assert float(rows.ref_iou[m]) == pytest.approx(float(overlap[loc]),
                                                       abs=1e-5)
        expected = reference_map(feats, strides, scores[loc, label],
                                 samples[0].metainfo, retain_graph=True)
        assert torch.allclose(rows.heatmaps[m, 0], expected, atol=1e-4)


def test_a_detection_matched_to_itself_is_the_detection(models, image):
    model = models['fcos']
    dets = explain(model, image, targets=('score', 'x2'),
                   score_thr=0.0).pred_instances
    rows = explain(model, image, targets=('score', 'x2'), candidates=(
        MatchedCandidates(dets.bboxes[:3].numpy(), dets.labels[:3].numpy(),
                          min_iou=0.999))).pred_instances
    torch.testing.assert_close(rows.scores, dets.scores[:3])
    for name in ('cand_level', 'cand_index', 'labels'):
        assert torch.equal(rows.get(name), dets.get(name)[:3])
    torch.testing.assert_close(rows.heatmaps.to_tensor(),
                               dets[:3].heatmaps.to_tensor())


def test_bad_requests_are_one_line_errors_before_the_model(models, image):
    for make, kind in [
            (lambda: MatchedCandidates([[1, 2, 3]], 0), ValueError),
            (lambda: MatchedCandidates([[5, 5, 1, 9]], 0), ValueError),
            (lambda: MatchedCandidates([[0, 0, 4, 4]], [0, 1]), ValueError),
            (lambda: SuppressedCandidates(iou_thr=0), ValueError),
            (lambda: OtherClasses(labels=[]), ValueError),
            (lambda: OtherClasses(labels=[-1]), ValueError)]:
        with pytest.raises(kind) as error:
            make()
        assert '\n' not in str(error.value)
    cases = [
        (models['fcos'], dict(candidates=OtherClasses(labels=[NUM_CLASSES])),
         ValueError, 'outside'),
        (models['detr'], dict(candidates=SuppressedCandidates()),
         ValueError, 'no NMS'),
        (models['fcos'], dict(candidates=OtherClasses(0, det_index=99)),
         ValueError, 'out of range'),
        (models['fcos'], dict(candidates=OtherClasses(0),
                              explainer=DRISE(num_masks=4)),
         TypeError, 'final detections only'),
        (models['fcos'], dict(candidates='suppressed'), TypeError,
         'CandidateSelector')]
    for model, kwargs, kind, words in cases:
        with pytest.raises(kind) as error:
            explain(model, image, score_thr=0.0, **kwargs)
        assert words in str(error.value) and '\n' not in str(error.value)


def test_no_detection_to_refer_to_is_an_empty_result(models, image):
    rows = explain(models['fcos'], image, score_thr=1.1,
                   candidates=SuppressedCandidates()).pred_instances
    assert len(rows) == 0 and rows.heatmaps.to_tensor().shape[0] == 0


TRAINED = ('configs/fcos/fcos_tiny_synthetic-crowd.py',
           'checkpoints/fcos_tiny_synthetic-crowd.pth')


def _explain_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location('_explain_candidates_tool',
                                                  'tools/explain.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('request_args,selector', [
    (['--suppressed', '--max-suppressed', '2'],
     lambda: SuppressedCandidates(max_per_detection=2)),
    (['--box', '80', '90', '130', '190', 'person'],
     lambda: MatchedCandidates([[80, 90, 130, 190]], 0))])
def test_tool_writes_what_the_api_selects(request_args, selector, tmp_path,
                                          capsys):
    """tools/explain.py with candidate options writes the rows (and their
    references) the API returns for the same request."""
    import mmcv
    from mmdet_odam.apis import init_explained_detector
    from mmdet_odam.apis.export import load_heatmaps_npz
    code = _explain_tool().main([*TRAINED, 'demo/crowd.png', '--out-dir',
                                 str(tmp_path), '--targets', 'score',
                                 *request_args])
    assert code == 0, capsys.readouterr().err
    assert 'candidate(s)' in capsys.readouterr().out
    saved = np.load(tmp_path / 'crowd.npz')
    model = init_explained_detector(*TRAINED)
    rows = explain(model, mmcv.imread('demo/crowd.png'), targets=('score', ),
                   candidates=selector()).pred_instances
    assert len(rows) > 0
    np.testing.assert_array_equal(saved['ref_index'], rows.ref_index.numpy())
    np.testing.assert_allclose(saved['ref_iou'], rows.ref_iou.numpy(),
                               atol=1e-6)
    np.testing.assert_array_equal(saved['cand_index'],
                                  rows.cand_index.numpy())
    np.testing.assert_allclose(saved['scores'], rows.scores.numpy(),
                               atol=1e-6)
    maps = load_heatmaps_npz(tmp_path / 'crowd.npz')
    np.testing.assert_allclose(maps[:, 0], rows.heatmaps.to_tensor()[:, 0],
                               atol=2e-3)  # stored as float16


def test_tool_refuses_unknown_classes_before_any_image(tmp_path, capsys):
    code = _explain_tool().main([*TRAINED, 'demo/crowd.png', '--out-dir',
                                 str(tmp_path), '--classes', 'dog'])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1] == "error: unknown class 'dog'; classes: " \
        'person'
    assert not any(tmp_path.iterdir())


def test_reference_correlation_compares_with_the_kept_detection(models,
                                                                image):
    """``ref_correlation`` is the cosine of the row's map and its
    detection's map (both from public renders on a 50-cell grid)."""
    from mmdet_odam.models.candidate_maps import common_grid_size
    model = models['faster_rcnn']
    targets = ('score', 'x2')
    dets = explain(model, image, explainer=exact_odam(), targets=targets,
                   score_thr=0.0).pred_instances
    rows = explain(model, image, explainer=exact_odam(), targets=targets,
                   score_thr=0.0, candidates=SuppressedCandidates(
                       iou_thr=0.3)).pred_instances
    assert len(rows) > 0 and rows.ref_correlation.shape == (len(rows), 2)
    grid = common_grid_size(image.shape[:2], 50)
    for k in range(len(rows)):
        own = rows.heatmaps.render([k], size=grid)[0].flatten(1).double()
        ref = dets.heatmaps.render([int(rows.ref_index[k])],
                                   size=grid)[0].flatten(1).double()
        cosine = (own * ref).sum(1) / (own.norm(dim=1) * ref.norm(dim=1))
        torch.testing.assert_close(rows.ref_correlation[k].double(),
                                   cosine.nan_to_num(0.), atol=1e-5,
                                   rtol=0)
    assert float(rows.ref_correlation.max()) > 0
