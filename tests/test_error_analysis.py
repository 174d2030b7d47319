"""Error classification (mmdet_odam.evaluation.error_analysis) on hand-built
boxes where each error type occurs a known number of times."""
import numpy as np
import pytest
import torch

from mmdet_odam.evaluation.error_analysis import (ERROR_TYPES, ErrorCounts,
                                                  box_iou,
                                                  classify_detections,
                                                  describe_extent,
                                                  extent_errors,
                                                  format_error_table,
                                                  sides_off)

# GT: 0 person, 1 person, 2 car, 3 person (nobody finds it), 4 person,
# 5 an ignore region
GT = np.array([[0, 0, 100, 100], [200, 0, 300, 100], [400, 0, 500, 100],
               [0, 300, 100, 400], [600, 0, 700, 100], [800, 0, 900, 100]],
              np.float32)
GT_LABELS = np.array([0, 0, 1, 0, 0, 0])
GT_IGNORE = np.array([0, 0, 0, 0, 0, 1], bool)
# (box, score, label, expected type, expected GT, expected reference det)
DETS = [
    ((0, 0, 100, 100), .9, 0, 'correct', 0, -1),
    ((2, 2, 100, 100), .8, 0, 'duplicate', 0, 0),  # IoU 0.96 with GT 0
    ((400, 0, 500, 100), .7, 0, 'classification', 2, -1),  # GT 2 is a car
    ((600, 0, 640, 100), .6, 0, 'localization', 4, -1),  # IoU 0.4
    ((200, 0, 240, 100), .5, 1, 'both', 1, -1),  # car on a person, IoU 0.4
    ((800, 800, 850, 850), .4, 0, 'background', -1, -1),
    ((810, 10, 850, 90), .3, 0, 'ignored', -1, -1),  # inside the region
    ((0, 0, 40, 100), .2, 0, 'localization', 0, 0),  # IoU 0.4 with GT 0
]


def _shuffled():
    """The detections in an order that is not their score order."""
    order = [3, 7, 0, 5, 1, 6, 2, 4]
    return [DETS[i] for i in order]


def test_each_type_as_constructed():
    dets = _shuffled()
    res = classify_detections([d[0] for d in dets], [d[1] for d in dets],
                              [d[2] for d in dets], GT, GT_LABELS, GT_IGNORE)
    index = {d[1]: i for i, d in enumerate(dets)}  # score -> position
    for box, score, label, kind, gt, ref in dets:
        i = index[score]
        assert res.det_type[i] == kind, (box, res.det_type[i])
        assert res.det_gt[i] == gt
        want_ref = -1 if ref < 0 else index[DETS[ref][1]]
        assert res.det_ref[i] == want_ref, (box, res.det_ref[i])
    assert res.gt_outcome == ['detected', 'covered', 'covered', 'missed',
                              'covered', 'ignored']
    assert res.missed == [3]
    assert res.det_gt[index[.9]] == 0 and res.gt_det[0] == index[.9]
    assert res.det_iou[index[.6]] == pytest.approx(0.4)


def test_higher_score_wins_the_object():
    # two exact boxes on one GT: the higher-scored one is correct wherever
    # it is listed, the other a duplicate
    boxes = [[0, 0, 10, 10], [0, 0, 10, 10]]
    res = classify_detections(boxes, [0.3, 0.6], [0, 0], [[0, 0, 10, 10]],
                              [0])
    assert res.det_type == ['duplicate', 'correct']
    assert res.det_ref.tolist() == [1, -1]


def test_thresholds_are_inclusive_at_t_f_and_t_b():
    gt = [[0, 0, 10, 10]]
    # IoU exactly 0.5 (correct) and exactly 0.1 (localization)
    res = classify_detections([[0, 0, 5, 10], [0, 0, 1, 10]], [.9, .8],
                              [0, 0], gt, [0])
    assert box_iou([[0, 0, 5, 10], [0, 0, 1, 10]], gt)[:, 0].tolist() == \
        pytest.approx([0.5, 0.1])
    assert res.det_type == ['correct', 'localization']
    with pytest.raises(ValueError, match='bg_iou'):
        classify_detections([], [], [], gt, [0], fg_iou=0.1, bg_iou=0.5)
    with pytest.raises(ValueError, match='4'):
        classify_detections([[0, 0, 1]], [1.], [0], gt, [0])


def test_iou_agrees_with_pycocotools():
    from pycocotools import mask as mask_utils
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 80, (7, 2))
    a = np.concatenate([xy, xy + rng.uniform(1, 40, (7, 2))], 1)
    xy = rng.uniform(0, 80, (5, 2))
    b = np.concatenate([xy, xy + rng.uniform(1, 40, (5, 2))], 1)
    xywh = lambda x: np.concatenate([x[:, :2], x[:, 2:] - x[:, :2]], 1)
    ref = mask_utils.iou(xywh(a).tolist(), xywh(b).tolist(), [0] * len(b))
    np.testing.assert_allclose(box_iou(torch.tensor(a), b), ref, atol=1e-5)


def test_empty_inputs():
    res = classify_detections(np.zeros((0, 4)), [], [], [[0, 0, 5, 5]], [0])
    assert res.det_type == [] and res.gt_outcome == ['missed']
    res = classify_detections([[0, 0, 5, 5]], [.5], [0], np.zeros((0, 4)), [])
    assert res.det_type == ['background'] and res.det_iou[0] == 0


def test_counts_per_type_and_class():
    counts = ErrorCounts(class_names=('person', 'car'))
    for _ in range(2):  # the same image twice: every count doubles
        res = classify_detections([d[0] for d in DETS], [d[1] for d in DETS],
                                  [d[2] for d in DETS], GT, GT_LABELS,
                                  GT_IGNORE)
        counts.add(res, [d[2] for d in DETS], GT_LABELS)
    summary = counts.summary()
    expected = dict(correct=1, localization=2, classification=1, both=1,
                    duplicate=1, background=1, missed=1)
    assert summary['counts'] == {t: 2 * n for t, n in expected.items()}
    assert summary['total'] == 16 and summary['num_errors'] == 14
    assert summary['share']['localization'] == pytest.approx(4 / 16)
    assert summary['error_share']['localization'] == pytest.approx(4 / 14)
    # 'both' is the car detection; every other entry is a person's
    assert summary['per_class']['car'] == dict(
        dict.fromkeys(ERROR_TYPES, 0), both=2)
    assert summary['per_class']['person']['localization'] == 4
    table = format_error_table(summary)
    row = next(r for r in table.splitlines() if r.startswith('| duplicate'))
    assert row.split('|')[2].strip() == '2'


def test_extent_errors_and_sides():
    gt = (10, 20, 110, 220)  # 100 wide, 200 high
    errors = extent_errors((5, 20, 90, 223), gt)
    assert errors == dict(x1=5., y1=0., x2=-20., y2=3.)
    # x2: 20 px of 100 (0.2), x1: 5 of 100 (0.05 < 0.1), y2: 3 of 200
    assert sides_off(errors, gt) == ['x2']
    assert sides_off(errors, gt, rel_tol=0.05) == ['x2', 'x1']
    assert sides_off(dict(x1=0., y1=0., x2=0., y2=1.), gt) == ['y2']
    assert describe_extent('x2', -20.) == \
        'x2 20 px too far left (cuts into the object)'
    assert describe_extent('y1', 4.) == \
        'y1 4 px too far up (beyond the object)'
