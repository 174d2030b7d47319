"""Odam-NMS (paper Sec. 3.3, Algorithm 1): the pure functions against
independent truths (numpy correlations, mmcv's NMS, hand-built cases) and the
detector integration (``test_cfg.odam_nms``) end to end."""
import copy
import math
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from mmcv.ops import batched_nms, nms
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.runner import load_checkpoint

import mmdet_odam  # noqa: F401  (registers modules)
from mmdet_odam.models.candidate_maps import CandidateMapper
from mmdet_odam.models import enable_odam_nms
from mmdet_odam.models.odam_nms import (OdamNMS, batched_odam_nms,
                                        map_correlation, odam_nms,
                                        pairwise_iou)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FCOS_CFG = osp.join(ROOT, 'configs/fcos/fcos_tiny_synthetic-crowd.py')
RETINA_CFG = osp.join(ROOT,
                      'configs/retinanet/retinanet_tiny_synthetic-crowd.py')
FRCNN_CFG = osp.join(ROOT,
                     'configs/faster_rcnn/faster-rcnn_tiny_synthetic-crowd.py')
DETR_CFG = osp.join(ROOT, 'configs/detr/detr_tiny_synthetic-crowd.py')
CHECKPOINT = osp.join(ROOT, 'checkpoints/fcos_tiny_synthetic-crowd.pth')
IMAGE = osp.join(ROOT, 'demo/crowd.png')

CLASSICAL = dict(t_low=0.0, t_high=1.0)


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    # many small tensor ops: OpenMP spinning on a busy 2-core box costs 10x+
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_case(n, seed, num_classes=1, tie_levels=None, zero_frac=0.0):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * 100
    wh = torch.rand(n, 2, generator=gen) * 40
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(n, generator=gen)
    if tie_levels:  # many equal scores: visiting order must match mmcv
        scores = (scores * tie_levels).round() / tie_levels
    labels = torch.randint(0, num_classes, (n, ), generator=gen)
    maps = (torch.rand(n, 40, generator=gen) - 0.5).clamp(min=0)
    maps[torch.rand(n, generator=gen) < zero_frac] = 0
    return boxes, scores, labels, maps


# -- correlation --------------------------------------------------------------
def test_pearson_matches_numpy_corrcoef():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(7, 6, 5, generator=gen).double()
    b = torch.rand(4, 30, generator=gen).double()
    truth = np.corrcoef(a.flatten(1).numpy(), b.numpy())[:7, 7:]
    np.testing.assert_allclose(map_correlation(a, b, 'pearson').numpy(), truth,
                               atol=1e-12)


def test_cosine_matches_hand_computation():
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(5, 12, generator=gen).double()
    b = torch.rand(3, 12, generator=gen).double()
    truth = np.array([[float(x @ y) / float(np.linalg.norm(x) *
                                             np.linalg.norm(y))
                       for y in b.numpy()] for x in a.numpy()])
    np.testing.assert_allclose(map_correlation(a, b).numpy(), truth,
                               atol=1e-12)
    # disjoint supports: cosine exactly 0, Pearson slightly negative
    # (covariance -mean_a * mean_b)
    x = torch.zeros(2, 100)
    x[0, :5], x[1, 50:55] = 1, 1
    assert map_correlation(x, x)[0, 1] == 0
    assert -0.06 < map_correlation(x, x, 'pearson')[0, 1] < 0
    y = torch.zeros(2, 100)
    y[0, :5], y[1, 3:8] = 1, 1
    assert map_correlation(y, y)[0, 1] > 0


def test_uninformative_maps_correlate_zero():
    maps = torch.rand(3, 16)
    maps[1] = 0
    const = torch.full((1, 16), 0.3)
    cos = map_correlation(maps, torch.cat([maps, const]))
    assert torch.all(cos[1] == 0) and torch.all(cos[:, 1] == 0)
    assert torch.allclose(cos[0, 0], torch.tensor(1.0))
    pear = map_correlation(torch.cat([maps, const]), maps, 'pearson')
    assert torch.all(pear[1] == 0) and torch.all(pear[3] == 0)
    tiny = maps * 1e-30  # no underflow in the normalisation
    assert torch.allclose(map_correlation(tiny, tiny), cos[:, :3], atol=1e-6)
    with pytest.raises(ValueError):
        map_correlation(maps, maps, 'spearman')


# -- Algorithm 1 on hand-built cases ------------------------------------------
def test_high_iou_pair_with_orthogonal_maps_is_kept():
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 9.]])  # IoU 0.9
    scores = torch.tensor([0.9, 0.8])
    maps = torch.tensor([[1., 0., 0.], [0., 1., 0.]])
    assert odam_nms(boxes, scores, maps).tolist() == [0, 1]
    assert odam_nms(boxes, scores, maps, **CLASSICAL).tolist() == [0]
    # similar maps: a duplicate again
    maps[1] = torch.tensor([1., 0.1, 0.])
    assert odam_nms(boxes, scores, maps).tolist() == [0]


def test_low_iou_pair_with_identical_maps_is_removed():
    boxes = torch.tensor([[0., 0., 10., 10.], [8., 8., 18., 18.]])  # IoU 0.02
    scores = torch.tensor([0.7, 0.9])
    maps = torch.tensor([[0., 2., 1.], [0., 4., 2.]])
    assert odam_nms(boxes, scores, maps).tolist() == [1]
    assert odam_nms(boxes, scores, maps, **CLASSICAL).tolist() == [1, 0]
    assert odam_nms(boxes, scores, maps, t_high=None).tolist() == [1, 0]


def test_only_kept_candidates_suppress():
    # a > b > c; b duplicates a (high IoU, same map); c duplicates only b
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.],
                          [2., 0., 12., 10.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    maps = torch.tensor([[1., 0.], [1., 0.], [0., 1.]])
    # IoU(a, c) = 0.67 > 0.5 but orthogonal maps: c survives, b does not
    assert odam_nms(boxes, scores, maps).tolist() == [0, 2]


@pytest.mark.parametrize('block_size', [1, 256])  # kept-vs-block / in-block
def test_pearson_decides_where_cosine_would_not(block_size):
    """Maps whose cosine and Pearson correlations fall on opposite sides of
    T_low (high-IoU pair) and of T_high (low-IoU pair)."""
    high_iou = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 9.]])  # 0.9
    low_iou = torch.tensor([[0., 0., 10., 10.], [8., 8., 18., 18.]])  # 0.02
    scores = torch.tensor([0.9, 0.8])
    # shared support, anti-correlated around the mean: cos 2/3, Pearson -1/3
    overlapping = torch.tensor([[1., 1., 1., 0.], [1., 1., 0., 1.]])
    # same shape on different backgrounds: cos 5/sqrt(73), Pearson 1
    offset = torch.tensor([[5., 4., 4., 4.], [1., 0., 0., 0.]])
    for maps, cosine, pearson in ((overlapping, 2 / 3, -1 / 3),
                                  (offset, 5 / math.sqrt(73), 1.0)):
        np.testing.assert_allclose(np.corrcoef(maps.numpy())[0, 1], pearson)
        a, b = maps.numpy()
        assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) == \
            pytest.approx(cosine)
    args = dict(t_low=0.2, t_high=0.8, block_size=block_size)
    # high IoU: cosine 0.67 >= T_low removes the second, Pearson < T_low not
    assert odam_nms(high_iou, scores, overlapping, **args).tolist() == [0]
    assert odam_nms(high_iou, scores, overlapping, correlation='pearson',
                    **args).tolist() == [0, 1]
    # low IoU: Pearson 1 > T_high removes the second, cosine 0.59 does not
    assert odam_nms(low_iou, scores, offset, **args).tolist() == [0, 1]
    assert odam_nms(low_iou, scores, offset, correlation='pearson',
                    **args).tolist() == [0]
    # the detector-facing module passes its correlation on
    labels = torch.zeros(2, dtype=torch.long)
    module = OdamNMS(correlation='pearson', block_size=block_size)
    assert module(high_iou, scores, labels, overlapping).tolist() == [0, 1]
    assert module(low_iou, scores, labels, offset).tolist() == [0]


def test_boundaries_follow_classical_nms():
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 5.]])  # IoU 0.5
    scores = torch.tensor([0.9, 0.8])
    same = torch.ones(2, 4)
    # IoU == T_iou is low-IoU (mmcv suppresses only IoU > thr)
    assert odam_nms(boxes, scores, same, t_high=None).tolist() == [0, 1]
    assert nms(boxes, scores, 0.5)[1].tolist() == [0, 1]
    assert odam_nms(boxes, scores, same, iou_threshold=0.49,
                    t_high=None).tolist() == [0]
    # corr == T_low at high IoU: duplicate; corr == T_high at low IoU: kept
    assert map_correlation(same, same)[0, 1] == 1
    assert odam_nms(boxes, scores, same, iou_threshold=0.4, t_low=1.0,
                    t_high=1.0).tolist() == [0]
    assert odam_nms(boxes, scores, same, iou_threshold=0.5, t_low=0.1,
                    t_high=1.0).tolist() == [0, 1]
    assert odam_nms(boxes, scores, same, iou_threshold=0.5, t_low=0.1,
                    t_high=0.99).tolist() == [0]
    # disjoint maps (corr exactly 0) at high IoU with t_low=0: suppressed
    ortho = torch.tensor([[1., 0.], [0., 1.]])
    assert odam_nms(boxes, scores, ortho, iou_threshold=0.4,
                    **CLASSICAL).tolist() == [0]


# -- equivalence with mmcv's NMS ----------------------------------------------
@pytest.mark.parametrize('seed', range(4))
def test_classical_thresholds_equal_mmcv_nms(seed):
    boxes, scores, labels, maps = random_case(300, seed, num_classes=3,
                                              tie_levels=20, zero_frac=0.2)
    keep = nms(boxes, scores, 0.5)[1]
    for block in (3, 64, 1000):
        assert torch.equal(odam_nms(boxes, scores, maps, 0.5, block_size=block,
                                    **CLASSICAL), keep)
    assert torch.equal(odam_nms(boxes, scores, maps, 0.5, t_low=None,
                                t_high=None), keep)
    # Pearson correlations can be negative: the classical limit is t_low=-1
    assert torch.equal(odam_nms(boxes, scores, maps, 0.5, t_low=-1.0,
                                t_high=1.0, correlation='pearson'), keep)
    assert torch.equal(odam_nms(boxes, scores, None, 0.5), keep)
    keep_b = batched_nms(boxes, scores, labels, dict(iou_threshold=0.6))[1]
    for max_num in (-1, 10):
        ours = batched_odam_nms(boxes, scores, labels, maps, 0.6,
                                max_num=max_num, block_size=50, **CLASSICAL)
        assert torch.equal(ours, keep_b[:max_num] if max_num > 0 else keep_b)
    agnostic = batched_nms(boxes, scores, labels,
                           dict(iou_threshold=0.5, class_agnostic=True))[1]
    assert torch.equal(batched_odam_nms(boxes, scores, labels, maps, 0.5,
                                        class_agnostic=True, **CLASSICAL),
                       agnostic)


def test_all_zero_maps_reduce_to_classical_nms():
    boxes, scores, labels, _ = random_case(200, 10, num_classes=2)
    zeros = torch.zeros(200, 5, 5)
    keep = batched_nms(boxes, scores, labels, dict(iou_threshold=0.5))[1]
    assert torch.equal(batched_odam_nms(boxes, scores, labels, zeros), keep)


def test_classes_never_suppress_each_other():
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 10.],
                          [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    maps = torch.ones(3, 4)  # identical maps: duplicates within a class
    labels = torch.tensor([0, 1, 0])
    assert sorted(batched_odam_nms(boxes, scores, labels, maps).tolist()) \
        == [0, 1]  # box 2: same class as 0, low IoU, corr 1 > 0.8: removed
    labels = torch.tensor([0, 1, 2])
    assert batched_odam_nms(boxes, scores, labels, maps).tolist() == [0, 1, 2]
    # each class alone gives the same as the batched call
    boxes, scores, labels, maps = random_case(150, 3, num_classes=3)
    keep = batched_odam_nms(boxes, scores, labels, maps)
    for cls in range(3):
        idx = (labels == cls).nonzero()[:, 0]
        alone = idx[odam_nms(boxes[idx], scores[idx], maps[idx])]
        assert set(alone.tolist()) == set(keep[labels[keep] == cls].tolist())


# -- bad inputs ---------------------------------------------------------------
def test_empty_single_and_degenerate_inputs():
    empty = odam_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 9))
    assert empty.dtype == torch.long and empty.numel() == 0
    assert batched_odam_nms(torch.zeros(0, 4), torch.zeros(0),
                            torch.zeros(0, dtype=torch.long),
                            torch.zeros(0, 9)).numel() == 0
    one = odam_nms(torch.tensor([[0., 0., 5., 5.]]), torch.tensor([0.3]),
                   torch.zeros(1, 9))
    assert one.tolist() == [0]
    # zero-area boxes: IoU 0 (mmcv: NaN), no crash
    degenerate = torch.tensor([[5., 5., 5., 5.], [5., 5., 5., 5.],
                               [0., 0., 10., 0.], [0., 0., 10., 10.]])
    iou = pairwise_iou(degenerate, degenerate)
    assert torch.isfinite(iou).all() and iou[:3, :3].max() == 0
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    maps = torch.rand(4, 9)
    assert torch.equal(odam_nms(degenerate, scores, maps, **CLASSICAL),
                       nms(degenerate, scores, 0.5)[1])
    assert odam_nms(degenerate, scores, torch.ones(4, 9)).tolist() == [0]
    nan_maps = maps.clone()
    nan_maps[1, 0] = float('nan')  # judged by IoU alone, no NaN leaks
    assert map_correlation(nan_maps, nan_maps)[1].eq(0).all()
    assert torch.equal(odam_nms(degenerate, scores, nan_maps, **CLASSICAL),
                       nms(degenerate, scores, 0.5)[1])
    with pytest.raises(ValueError):
        odam_nms(degenerate, scores, maps[:2])
    with pytest.raises(ValueError):
        odam_nms(degenerate, scores, maps, t_low=0.9, t_high=0.5)


def test_lazy_maps_stop_at_max_num():
    boxes, scores, labels, maps = random_case(400, 4)
    asked = []

    def provider(idx):
        asked.append(len(idx))
        return maps[idx]

    full = odam_nms(boxes, scores, maps)
    lazy = odam_nms(boxes, scores, provider, max_num=5, block_size=16)
    assert torch.equal(lazy, full[:5])
    assert sum(asked) < 400


def test_needs_maps_is_exact_pruning():
    boxes, scores, labels, maps = random_case(200, 5, num_classes=2)
    module = OdamNMS(t_high=1.0, t_low=0.3)
    need = module.needs_maps(boxes, labels, 0.5)
    assert 0 < int(need.sum()) < 200
    rows = torch.tensor([5, 17, 3])
    assert torch.equal(module.needs_maps(boxes, labels, 0.5, rows=rows),
                       need[rows])
    pruned = maps.clone()
    pruned[~need] = 0
    assert torch.equal(module(boxes, scores, labels, maps),
                       module(boxes, scores, labels, pruned))
    assert OdamNMS().needs_maps(boxes, labels, 0.5).all()
    assert not OdamNMS(t_low=None, t_high=1.0).needs_maps(
        boxes, labels, 0.5).any()
    # the cosine of non-negative maps is >= 0: T_l = 0 cannot keep a pair
    assert not OdamNMS(**CLASSICAL).needs_maps(boxes, labels, 0.5).any()
    assert OdamNMS(correlation='pearson', **CLASSICAL).needs_maps(
        boxes, labels, 0.5).any()
    signed = OdamNMS(**CLASSICAL)
    signed.mapper.grad_mode = 'pos'
    assert signed.needs_maps(boxes, labels, 0.5).any()
    # the integration computes maps lazily, for needed candidates only,
    # capped at the max_candidates best-scored ones
    for cap, expected in ((0, need), (10, None)):
        asked = []

        def compute(idx):
            asked.append(idx)
            return maps[idx]

        module = OdamNMS(t_high=1.0, t_low=0.3, max_candidates=cap,
                         block_size=32)
        keep = module._select(boxes, scores, labels, compute, 40, None, -1)
        got = torch.zeros(200, dtype=torch.bool)
        got[torch.cat(asked)] = True
        given = maps.clone()
        given[~got] = 0  # no map: IoU rule
        assert torch.equal(keep, module(boxes, scores, labels, given))
        if expected is not None:
            assert torch.equal(got, expected)
        else:
            assert int(got.sum()) == 10 and not (got & ~need).any()
            assert scores[got].min() >= scores[need & ~got].max()


# -- detector integration -----------------------------------------------------
def build(cfg_path, test_cfg_update=None, seed=0, enable=True):
    """A detector with Odam-NMS enabled (``test_cfg.odam_nms`` then decides
    per call, see ``detect``)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(cfg_path)
    if test_cfg_update:
        cfg.model.test_cfg.update(test_cfg_update)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.cfg = cfg
    return (enable_odam_nms(model) if enable else model).eval()


def set_odam(cfg_holder, odam):
    if odam is None:
        cfg_holder.pop('odam_nms', None)
    else:
        cfg_holder['odam_nms'] = odam


def detect(model, img, cfg_holder, odam):
    from mmdet.apis import inference_detector
    set_odam(cfg_holder, odam)
    try:
        return inference_detector(model, img).pred_instances
    finally:
        set_odam(cfg_holder, None)


def assert_same(a, b):
    assert set(a.keys()) == set(b.keys()) == {'bboxes', 'scores', 'labels'}
    for key in ('bboxes', 'scores', 'labels'):
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope='module')
def denormals_flushed():
    # random-weight models produce denormals that make CPU convs crawl
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


@pytest.fixture(scope='module')
def fcos():
    model = build(FCOS_CFG)
    load_checkpoint(model, CHECKPOINT, map_location='cpu', logger='silent')
    return model


@pytest.fixture(scope='module')
def crowd():
    return mmcv.imread(IMAGE)


def test_fcos_classical_thresholds_give_standard_detections(
        fcos, crowd, monkeypatch):
    head_cfg = fcos.bbox_head.test_cfg

    def no_maps(*args, **kwargs):
        raise AssertionError('no map can matter with T_l = 0, T_h = 1')

    monkeypatch.setattr(CandidateMapper, 'dense', no_maps)
    # rescaled input (scale_factor != 1) and an active min_bbox_size filter
    resized = mmcv.imresize(crowd, (320, 200))
    head_cfg['min_bbox_size'] = 6
    try:
        for img in (crowd, resized):
            standard = detect(fcos, img, head_cfg, None)
            ours = detect(fcos, img, head_cfg,
                          dict(type='OdamNMS', t_low=0, t_high=1))
            assert len(standard) > 20
            assert_same(standard, ours)
    finally:
        head_cfg['min_bbox_size'] = 0


def test_fcos_odam_nms_changes_detections(fcos, crowd):
    head_cfg = fcos.bbox_head.test_cfg
    standard = detect(fcos, crowd, head_cfg, None)
    ours = detect(fcos, crowd, head_cfg, dict(type='OdamNMS'))
    assert 0 < len(ours) <= head_cfg.max_per_img
    assert torch.all(ours.scores[:-1] >= ours.scores[1:])
    same = (standard.bboxes[:, None] == ours.bboxes[None]).all(-1).any(0)
    assert not torch.equal(ours.bboxes, standard.bboxes)
    assert int(same.sum()) >= len(ours) // 2  # mostly the same objects
    # rescue only (no low-IoU removal): keeps overlapping pairs NMS cannot
    rescue = detect(fcos, crowd, head_cfg,
                    dict(type='OdamNMS', t_high=None, t_low=0.9))
    iou = pairwise_iou(rescue.bboxes, rescue.bboxes).triu(1)
    assert iou.max() > 0.5
    assert pairwise_iou(standard.bboxes, standard.bboxes).triu(1).max() <= 0.5


def test_fcos_config_key_and_batch(fcos, crowd):
    """``model.test_cfg.odam_nms`` from a config, batched images."""
    from mmdet.apis import init_detector
    from mmdet.registry import TASK_UTILS
    cfg = Config.fromfile(FCOS_CFG)
    cfg.model.update(type='OdamNMSDetector', detector_type='FCOS')
    # with classical thresholds maps cannot matter: few maps keep it fast
    cfg.model.test_cfg.odam_nms = dict(type='OdamNMS', iou_threshold=0.5,
                                       t_high=1.0, t_low=0.0,
                                       max_candidates=32)
    model = init_detector(cfg, CHECKPOINT, device='cpu')
    assert isinstance(TASK_UTILS.build(cfg.model.test_cfg.odam_nms), OdamNMS)
    pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    pipeline[0].type = 'mmdet.LoadImageFromNDArray'
    from mmengine.dataset import Compose
    pipeline = Compose(pipeline)
    imgs = [crowd, mmcv.imresize(crowd, (300, 180))]
    batch = pseudo_collate([pipeline(dict(img=img, img_id=i))
                            for i, img in enumerate(imgs)])
    with torch.no_grad():
        ours = model.test_step(batch)
        set_odam(model.bbox_head.test_cfg, None)
        standard = model.test_step(batch)
    for a, b in zip(standard, ours):
        assert_same(a.pred_instances, b.pred_instances)
    assert enable_odam_nms(model) is model  # idempotent


def test_only_the_enabled_model_changes(fcos, crowd):
    """Odam-NMS lives on the enabled model's head: MMDetection's classes
    keep their methods, and a plain model of the same class whose test
    config names ``odam_nms`` still runs standard NMS beside it."""
    import subprocess
    import sys
    odam_cfg = osp.join(ROOT, 'configs/fcos/'
                        'fcos_tiny_odam-nms_synthetic-crowdhuman.py')
    script = (
        'from mmdet.models.dense_heads.base_dense_head import BaseDenseHead '
        'as D\nfrom mmdet.models.roi_heads import StandardRoIHead as R\n'
        'a, b = D.predict, R.predict_bbox\nimport mmdet_odam\n'
        'from mmdet.apis import init_detector\n'
        f'm = init_detector({odam_cfg!r}, None, device="cpu", '
        'palette="random")\n'
        'assert "predict" in vars(m.bbox_head)\n'
        'assert D.predict is a and R.predict_bbox is b\n')
    run = subprocess.run([sys.executable, '-c', script], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    plain = build(FCOS_CFG, enable=False)
    plain.load_state_dict(fcos.state_dict())
    odam = dict(type='OdamNMS', t_high=None, t_low=0.9)
    rescued = detect(fcos, crowd, fcos.bbox_head.test_cfg, odam)
    standard = detect(plain, crowd, plain.bbox_head.test_cfg, odam)
    assert_same(standard, detect(plain, crowd, plain.bbox_head.test_cfg,
                                 None))
    assert not torch.equal(rescued.bboxes, standard.bboxes)


def test_inference_mode_is_refused(fcos, crowd):
    from mmdet.apis import inference_detector
    set_odam(fcos.bbox_head.test_cfg, dict(type='OdamNMS'))
    try:
        with torch.inference_mode(), pytest.raises(RuntimeError):
            inference_detector(fcos, crowd)
    finally:
        set_odam(fcos.bbox_head.test_cfg, None)


def algorithm_1(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                maps: np.ndarray, iou_threshold: float, t_high: float,
                t_low: float) -> list:
    """Odam-NMS as the paper's Algorithm 1 states it, one candidate at a time,
    with the conventions the module documents: ``IoU > T_iou`` is high (as
    mmcv), ties at T_low / T_high remove / keep, a pair with an all-zero map is
    judged by IoU alone, cosine correlation, classes apart.

    Returns:
        list[int]: Kept indices by descending score.
    """
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    norms = np.linalg.norm(maps, axis=1)
    kept = []
    for p in np.argsort(-scores, kind='stable'):
        d = np.array(kept, dtype=int)
        inter = (np.minimum(x2[p], x2[d]) - np.maximum(x1[p], x1[d])).clip(
            min=0) * (np.minimum(y2[p], y2[d]) - np.maximum(y1[p], y1[d])
                      ).clip(min=0)
        iou = inter / (areas[p] + areas[d] - inter)
        informative = (norms[p] > 0) & (norms[d] > 0)
        corr = maps[d] @ maps[p] / np.maximum(norms[d] * norms[p], 1e-300)
        high = iou > iou_threshold
        duplicate = np.where(informative,
                             (high & (corr >= t_low)) |
                             (~high & (corr > t_high)), high)
        if not (duplicate & (labels[d] == labels[p])).any():
            kept.append(int(p))
    return kept


@pytest.fixture
def recorded_candidates(monkeypatch):
    """Per image, the candidates the detector integration hands to Odam-NMS
    and the maps it computes for them (zero where it computes none)."""
    records = []
    select = OdamNMS._select

    def recording_select(self, bboxes, scores, labels, compute, map_size,
                         nms_cfg, max_num):
        record = dict(boxes=bboxes, scores=scores, labels=labels,
                      maps=torch.zeros(len(scores), map_size,
                                       dtype=torch.float64),
                      has_map=torch.zeros(len(scores), dtype=torch.bool),
                      max_num=max_num, module=self)
        records.append(record)

        def recording_compute(idx):
            maps = compute(idx)
            record['maps'][idx] = maps.flatten(1).double()
            record['has_map'][idx] = True
            return maps

        return select(self, bboxes, scores, labels, recording_compute,
                      map_size, nms_cfg, max_num)

    monkeypatch.setattr(OdamNMS, '_select', recording_select)
    return records


def assert_detections_follow_algorithm_1(detections, record, iou_threshold):
    """The detector's output is Algorithm 1 on its own candidates and maps."""
    module = record['module']
    assert len(record['scores']) > 20
    assert len(set(record['scores'].tolist())) == len(record['scores'])
    keep = algorithm_1(record['boxes'].double().numpy(),
                       record['scores'].double().numpy(),
                       record['labels'].numpy(), record['maps'].numpy(),
                       iou_threshold, module.t_high, module.t_low)
    if record['max_num'] > 0:
        keep = keep[:record['max_num']]
    assert len(detections) == len(keep) > 0
    assert torch.equal(detections.bboxes, record['boxes'][keep])
    assert torch.equal(detections.scores, record['scores'][keep])
    # and the maps decided something: classical NMS keeps a different set
    classical = nms(record['boxes'], record['scores'], iou_threshold)[1]
    if record['max_num'] > 0:
        classical = classical[:record['max_num']]
    assert classical.tolist() != keep


def test_retinanet_odam_nms_is_algorithm_1(crowd, denormals_flushed,
                                           recorded_candidates):
    model = build(RETINA_CFG, dict(score_thr=0.0, nms_pre=150), seed=1)
    standard = detect(model, crowd, model.bbox_head.test_cfg, None)
    ours = detect(model, crowd, model.bbox_head.test_cfg,
                  dict(type='OdamNMS', **CLASSICAL))
    assert len(standard) > 10
    assert_same(standard, ours)
    odam = detect(model, crowd, model.bbox_head.test_cfg,
                  dict(type='OdamNMS', max_candidates=50))
    record, = recorded_candidates[1:]  # the classical run computes no map
    # maps for the 50 best-scored candidates only (max_candidates)
    best = record['scores'].argsort(descending=True)[:50]
    assert torch.equal(record['has_map'].nonzero()[:, 0], best.sort()[0])
    assert_detections_follow_algorithm_1(odam, record, 0.5)


def test_faster_rcnn_odam_nms_is_algorithm_1(crowd, denormals_flushed,
                                             recorded_candidates):
    model = build(FRCNN_CFG, seed=2)
    rcnn_cfg = model.roi_head.test_cfg
    standard = detect(model, crowd, rcnn_cfg, None)
    ours = detect(model, crowd, rcnn_cfg,
                  dict(type='OdamNMS', iou_threshold=None, **CLASSICAL))
    assert len(standard) > 10
    assert_same(standard, ours)
    paper = detect(model, crowd, rcnn_cfg,
                   dict(type='OdamNMS', iou_threshold=0.6, t_high=0.7,
                        t_low=0.3))
    record = recorded_candidates[-1]
    assert record['max_num'] == rcnn_cfg.max_per_img
    assert_detections_follow_algorithm_1(paper, record, 0.6)


def test_an_ignored_odam_nms_entry_is_refused_by_the_test_tool(tmp_path):
    """tools/test.py refuses a plain detector whose test config names
    ``odam_nms`` (it would run standard NMS), before any model is built."""
    import subprocess
    import sys
    cfg_path = tmp_path / 'plain_with_odam_nms.py'
    cfg_path.write_text(
        f"_base_ = [{FCOS_CFG!r}]\n"
        "model = dict(test_cfg=dict(odam_nms=dict(type='OdamNMS')))\n")
    run = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools/test.py'), str(cfg_path),
         CHECKPOINT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1, run.stderr[-2000:]
    assert lines[-1] == (
        'error: model.test_cfg.odam_nms has no effect on a plain FCOS: build '
        "it with model.type='OdamNMSDetector', detector_type='FCOS'")
    from mmdet_odam.models import check_odam_nms_config
    check_odam_nms_config(Config.fromfile(osp.join(
        ROOT, 'configs/fcos/fcos_tiny_odam-nms_synthetic-crowdhuman.py')).model)


def test_detr_refuses_odam_nms(crowd, denormals_flushed):
    model = build(DETR_CFG, enable=False)
    with pytest.raises(NotImplementedError, match='DETR') as error:
        enable_odam_nms(model)
    assert '\n' not in str(error.value)
    from mmdet.registry import MODELS
    cfg = Config.fromfile(DETR_CFG)
    cfg.model.update(type='OdamNMSDetector', detector_type='DETR')
    with pytest.raises(NotImplementedError, match='no NMS'):
        MODELS.build(cfg.model)
    assert len(detect(model, crowd, model.bbox_head.test_cfg, None)) > 0
