"""Crowd / sparse recall breakdown (ODAM paper App. A.4.2) with hand truth."""
import json

import numpy as np
import pytest
import torch

from mmdet_odam.evaluation.crowd_recall import (CrowdHumanRecallMetric,
                                                crowd_gt_mask,
                                                format_recall_table,
                                                greedy_match_recall,
                                                recall_counts)


# ----------------------------------------------------------------------------
# crowd_gt_mask
# ----------------------------------------------------------------------------
def test_crowd_gt_mask_hand_boxes():
    boxes = np.array([
        [0, 0, 10, 10],  # IoU with next = 90 / 110 = 0.818 -> crowd
        [1, 0, 11, 10],
        [20, 0, 30, 10],  # IoU with next = 50 / 150 = 0.333 -> sparse
        [25, 0, 35, 10],
        [40, 0, 50, 10],  # IoU with next = 100 / 200 = 0.5, not > 0.5
        [40, 0, 50, 20],
    ], dtype=float)
    assert crowd_gt_mask(boxes).tolist() == [True, True] + [False] * 4
    assert crowd_gt_mask(boxes, iou_thr=0.3).tolist() == [True] * 6
    # a box is never crowded by itself; empty input keeps its shape
    assert crowd_gt_mask(boxes[:1]).tolist() == [False]
    assert crowd_gt_mask(np.zeros((0, 4))).shape == (0, )


# ----------------------------------------------------------------------------
# greedy_match_recall
# ----------------------------------------------------------------------------
def test_greedy_recall_is_one_to_one_by_score():
    gts = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], dtype=float)
    # d0 overlaps both GTs (IoU 85/115 = 0.739 and 95/105 = 0.905) and takes
    # the better one, g1; d1 only reaches g1 (IoU 80/120 = 0.667; with g0
    # 60/140 = 0.43), which is taken: g0 stays missed (an optimal bipartite
    # matching would recall both -- greedy by score does not)
    dets = np.array([[1.5, 0, 11.5, 10], [4, 0, 14, 10]], dtype=float)
    scores = np.array([0.9, 0.8])
    assert greedy_match_recall(dets, scores, gts).tolist() == [False, True]
    # visiting order is by score, not by input order
    assert greedy_match_recall(dets[::-1], scores[::-1],
                               gts).tolist() == [False, True]
    # if the lower-scored detection were first, both would be recalled
    assert greedy_match_recall(dets, scores[::-1],
                               gts).tolist() == [True, True]


def test_greedy_recall_ignore_regions_and_thresholds():
    gts = np.array([
        [0, 0, 10, 10],  # g0
        [2, 0, 12, 10],  # g1 (crowd with g0)
        [30, 0, 40, 10],  # g2: ignore region
        [60, 0, 70, 10],  # g3
        [61, 0, 71, 10],  # g4: ignore region, IoU 1 with d3
        [80, 0, 90, 10],  # g5
    ], dtype=float)
    ignore = np.array([False, False, True, False, True, False])
    dets = np.array([
        [1.5, 0, 11.5, 10],  # d0 0.90 -> g1 (0.905 beats g0's 0.739)
        [0, 0, 10, 10],  # d1 0.80 -> g0
        [30, 0, 40, 10],  # d2 0.95 on the ignore region: recalls nothing
        [61, 0, 71, 10],  # d3 0.99 -> g3 (0.818), not the ignore box
        [100, 0, 110, 10],  # d4 0.50 false positive
        [80, 0, 90, 20],  # d5 0.40 -> g5 at IoU exactly 0.5 (inclusive)
    ], dtype=float)
    scores = np.array([0.9, 0.8, 0.95, 0.99, 0.5, 0.4])
    recall = greedy_match_recall(dets, scores, gts, ignore)
    assert recall.tolist() == [True, True, False, True, False, True]
    # score threshold is inclusive
    recall = greedy_match_recall(dets, scores, gts, ignore, score_thr=0.4)
    assert recall.tolist() == [True, True, False, True, False, True]
    recall = greedy_match_recall(dets, scores, gts, ignore, score_thr=0.41)
    assert recall.tolist() == [True, True, False, True, False, False]
    recall = greedy_match_recall(dets, scores, gts, ignore, score_thr=0.85)
    assert recall.tolist() == [False, True, False, True, False, False]
    recall = greedy_match_recall(dets, scores, gts, ignore, iou_thr=0.51)
    assert recall.tolist() == [True, True, False, True, False, False]
    # no detections / no GT
    assert greedy_match_recall(np.zeros((0, 4)), np.zeros(0),
                               gts).tolist() == [False] * 6
    assert greedy_match_recall(dets, scores, np.zeros((0, 4))).shape == (0, )


def test_recall_counts_and_table():
    counts = recall_counts(np.array([True, False, True, True]),
                           np.array([True, True, False, False]))
    assert counts == dict(num_gt_all=4, num_recalled_all=3, num_gt_sparse=2,
                          num_recalled_sparse=2, num_gt_crowd=2,
                          num_recalled_crowd=1)
    table = format_recall_table(counts, 0.3)
    assert 'Total' in table and '3 (75.0%)' in table
    assert 'Crowd' in table and '1 (50.0%)' in table


# ----------------------------------------------------------------------------
# CrowdHumanRecallMetric end to end on a hand-made odgt
# ----------------------------------------------------------------------------
def _box(xyxy, tag='person', ignore=0):
    x1, y1, x2, y2 = xyxy
    xywh = [x1, y1, x2 - x1, y2 - y1]
    return dict(tag=tag, fbox=xywh, vbox=xywh, hbox=xywh,
                extra=dict(ignore=ignore), head_attr=dict(ignore=ignore))


# image 'a' (h 100, w 200): a0/a1 crowd (IoU 1560 / 2040 = 0.765), a2 sparse,
# one 'mask' ignore region. image 'b': b1/b2 crowd, b0 sparse although an
# ignored person box overlaps it with IoU 0.905 (ignored boxes don't count).
ODGT = [
    dict(ID='a', gtboxes=[
        _box([10, 10, 40, 70]), _box([14, 10, 44, 70]),
        _box([100, 10, 130, 70]), _box([150, 10, 170, 30], tag='mask')
    ]),
    dict(ID='b', gtboxes=[
        _box([10, 10, 50, 90]), _box([120, 10, 150, 70]),
        _box([124, 10, 154, 70]), _box([12, 10, 52, 90], ignore=1)
    ]),
]
PREDS = dict(
    a=[([10, 10, 40, 70], 0.9), ([100, 10, 130, 70], 0.8),
       ([150, 10, 170, 30], 0.7),  # on the ignore region
       ([60, 60, 80, 90], 0.6),  # false positive
       ([14, 10, 44, 70], 0.15)] +
    [(b, 0.05) for b in ([160, 50, 180, 90], [182, 50, 198, 90],
                         [0, 75, 8, 98], [85, 75, 98, 98])],
    b=[([10, 10, 50, 90], 0.95), ([120, 10, 150, 70], 0.85),
       ([124, 10, 154, 70], 0.05)])
# JI (k / (m + n - k), detections with score > t, ignore-region dets off n):
#   t = 0.0: a 3 / (3 + 8 - 3) = 0.375, b 1.0   -> 0.6875
#   t = 0.1: a 3 / (3 + 4 - 3) = 0.75,  b 2 / 3 -> 0.7083 (best)
#   t = 0.2: a 2 / (3 + 3 - 2) = 0.5,   b 2 / 3 -> 0.5833
# recall at score >= 0.1: a0 a1 a2 b0 b1 (b2 missed): all 5/6, sparse 2/2,
# crowd 3/4; every detection (max_recall): 6/6.


def _run_metric(tmp_path, metric=('AP', 'MR', 'JI'), odgt=ODGT, preds=PREDS,
                **kwargs):
    from mmengine.registry import init_default_scope

    from mmdet.registry import METRICS
    init_default_scope('mmdet')
    ann = tmp_path / 'annotation_val.odgt'
    ann.write_text('\n'.join(json.dumps(r) for r in odgt) + '\n')
    metric = METRICS.build(
        dict(type='CrowdHumanRecallMetric', ann_file=str(ann),
             metric=list(metric), num_ji_process=1, **kwargs))
    assert isinstance(metric, CrowdHumanRecallMetric)
    samples = []
    for record in odgt:
        boxes, scores = zip(*preds[record['ID']])
        samples.append(dict(
            img_id=record['ID'], ori_shape=(100, 200),
            pred_instances=dict(bboxes=torch.tensor(boxes, dtype=torch.float),
                                scores=torch.tensor(scores))))
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def test_metric_end_to_end(tmp_path):
    res = _run_metric(tmp_path)
    for key in ('mAP', 'mMR', 'JI'):
        assert key in res
    assert res['JI'] == pytest.approx((0.75 + 2 / 3) / 2, abs=1e-4)
    assert res['best_ji_score_thr'] == pytest.approx(0.1)
    assert (res['num_gt_all'], res['num_recalled_all']) == (6, 5)
    assert (res['num_gt_sparse'], res['num_recalled_sparse']) == (2, 2)
    assert (res['num_gt_crowd'], res['num_recalled_crowd']) == (4, 3)
    assert res['recall_all'] == pytest.approx(5 / 6, abs=1e-4)
    assert res['recall_sparse'] == 1.0
    assert res['recall_crowd'] == 0.75
    assert res['max_recall'] == 1.0


def test_metric_fixed_threshold_and_without_ji(tmp_path):
    # score >= 0.5: a0 a2 b0 b1 -> crowd a0 b1 (2/4), sparse 2/2
    res = _run_metric(tmp_path, recall_score_thr=0.5)
    assert res['best_ji_score_thr'] == pytest.approx(0.1)
    assert (res['num_recalled_crowd'], res['num_recalled_sparse']) == (2, 2)
    # JI not requested: its curve is still computed for the threshold
    res_ap = _run_metric(tmp_path, metric=['AP'])
    assert 'JI' not in res_ap and res_ap['best_ji_score_thr'] == \
        pytest.approx(0.1)
    assert res_ap['recall_crowd'] == 0.75


def test_metric_default_crowd_threshold_is_the_papers_0_5(tmp_path):
    """Built without ``crowd_iou_thr``: a GT pair of IoU 1/3 and one of IoU
    exactly 0.5 are sparse, only the pair above 0.5 is crowd."""
    odgt = [dict(ID='c', gtboxes=[
        _box([10, 10, 40, 70]), _box([25, 10, 55, 70]),  # IoU 900 / 2700
        _box([100, 10, 130, 70]), _box([100, 10, 130, 40]),  # 900 / 1800
        _box([150, 10, 180, 70]), _box([153, 10, 183, 70]),  # 1620 / 1980
    ])]
    preds = dict(c=[([10, 10, 40, 70], 0.9), ([100, 10, 130, 70], 0.8),
                    ([150, 10, 180, 70], 0.7), ([153, 10, 183, 70], 0.6)])
    res = _run_metric(tmp_path, metric=['AP'], odgt=odgt, preds=preds,
                      recall_score_thr=0.5)
    assert (res['num_gt_sparse'], res['num_recalled_sparse']) == (4, 2)
    assert (res['num_gt_crowd'], res['num_recalled_crowd']) == (2, 2)
    assert res['recall_sparse'] == 0.5 and res['recall_crowd'] == 1.0


def test_crowdhuman_base_configs_use_recall_metric():
    from mmengine.config import Config
    for name in ('crowdhuman', 'synthetic_crowd_crowdhuman'):
        cfg = Config.fromfile(f'configs/_base_/datasets/{name}.py')
        assert cfg.val_evaluator.type == 'CrowdHumanRecallMetric'
        assert cfg.test_evaluator.crowd_iou_thr == 0.5


def test_test_cli_data_root_override():
    """``tools/test.py --data-root`` also re-bases the paths the CrowdHuman
    config built from ``data_root`` when it was parsed."""
    import importlib.util

    from mmengine.config import Config
    spec = importlib.util.spec_from_file_location('odam_test_cli',
                                                  'tools/test.py')
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    cfg = Config.fromfile('configs/fcos/fcos_tiny_odam-nms_synthetic-'
                          'crowdhuman.py')
    cli.override_data_root(cfg, '/data/other')
    for split in ('train', 'val', 'test'):
        ds = cfg[f'{split}_dataloader'].dataset
        assert ds.data_root == '/data/other/'
        assert ds.extra_ann_file.startswith('/data/other/annotations/id_hw_')
    assert cfg.test_evaluator.ann_file == \
        '/data/other/annotations/annotation_val.odgt'
    assert cfg.val_evaluator.ann_file == cfg.test_evaluator.ann_file
