"""Explanation metrics (paper Sec. 4.2) against hand computations."""
import math

import pytest
import torch

from mmdet_odam.evaluation.explanation_metric import (ExplanationMetric,
                                                      object_metrics)
from mmdet_odam.evaluation.explanation_metrics import (
    box_iou, box_region, compactness, curve_auc, energy_pointing_game,
    importance_ranks, match_well_detected, object_discrimination_index,
    perturbation_curve, pointing_game, steps_for_area, tracked_score,
    union_regions, vea_auc, vea_curve)


def test_box_region_uses_pixel_centres():
    region = box_region((2, 3, 12, 8), (20, 30))
    # columns 2..11 (centres 2.5..11.5), rows 3..7 (centres 3.5..7.5)
    assert int(region.sum()) == 10 * 5
    assert region[3, 2] and region[7, 11]
    assert not region[2, 2] and not region[8, 11] and not region[3, 12]


def test_single_peak_inside_the_box():
    heat = torch.zeros(20, 30)
    heat[5, 10] = 1.0
    box = (8, 3, 15, 9)
    region = box_region(box, heat.shape)
    assert pointing_game(heat, region) == 1.0
    assert energy_pointing_game(heat, region) == 1.0
    assert compactness(heat, box) == 0.0


def test_peak_outside_the_box_misses_and_zero_map_is_nan():
    heat = torch.zeros(20, 30)
    heat[0, 0] = 1.0
    region = box_region((8, 3, 15, 9), heat.shape)
    assert pointing_game(heat, region) == 0.0
    assert energy_pointing_game(heat, region) == 0.0
    zero = torch.zeros(20, 30)
    assert pointing_game(zero, region) == 0.0
    assert math.isnan(energy_pointing_game(zero, region))
    assert math.isnan(compactness(zero, (8, 3, 15, 9)))


def test_uniform_map_energy_is_the_area_ratio():
    heat = torch.full((20, 30), 0.7)
    box = (2, 3, 12, 8)  # 10 x 5 pixels
    assert energy_pointing_game(heat, box_region(box, heat.shape)) == \
        pytest.approx(50 / 600)


def test_compactness_hand_computed():
    heat = torch.zeros(10, 10)
    heat[0, 0] = 1.0
    heat[0, 2] = 0.5  # distance 2 from the peak
    box = (0, 0, 4, 2)  # w = 4, h = 2: (w^2 + h^2) / 4 = 5
    expected = math.sqrt(0.5 * 4 / 5 / 1.5)
    assert compactness(heat, box) == pytest.approx(expected)


def test_odi_zero_inside_target_only_and_two_box_case():
    shape = (10, 10)
    target = box_region((0, 0, 4, 4), shape)  # rows/cols 0..3
    other = box_region((3, 3, 8, 8), shape)  # rows/cols 3..7 (overlaps 3,3)
    heat = torch.zeros(shape)
    heat[0, 0] = heat[1, 1] = 1.0  # target only
    assert object_discrimination_index(heat, target, other) == 0.0
    heat[6, 6] = 3.0  # other only
    heat[9, 9] = 10.0  # background: ignored
    assert object_discrimination_index(heat, target, other) == \
        pytest.approx(3 / 5)
    heat[3, 3] = 1.0  # shared pixel counts as "other"
    assert object_discrimination_index(heat, target, other) == \
        pytest.approx(4 / 6)
    none = union_regions([], shape)
    assert object_discrimination_index(heat, target, none) == 0.0
    assert math.isnan(object_discrimination_index(
        torch.zeros(shape), target, other))


def test_vea_on_a_hand_made_mask():
    heat = torch.tensor([[1.0, 0.8, 0.0, 0.0],
                         [0.6, 0.4, 0.0, 0.0],
                         [0.0, 0.0, 0.2, 0.0],
                         [0.0, 0.0, 0.0, 0.0]])
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2, :2] = True
    ious = vea_curve(heat, mask, thresholds=(0.1, 0.5, 0.9))
    # T=0.1: 5 map pixels, 4 in the mask -> 4/5; T=0.5: 3/4; T=0.9: 1/4
    assert ious.tolist() == pytest.approx([0.8, 0.75, 0.25])
    assert vea_auc(ious, (0.1, 0.5, 0.9)) == pytest.approx(
        0.4 * (0.8 + 0.75) / 2 + 0.4 * (0.75 + 0.25) / 2)
    # constant IoU c over the default thresholds: 0.8 c
    assert vea_auc(torch.full((9, ), 0.5)) == pytest.approx(0.4)


def test_importance_ranks_descending_and_stable():
    sal = torch.tensor([[0.1, 0.9], [0.9, 0.5]])
    assert importance_ranks(sal).tolist() == [[3, 0], [1, 2]]


def test_steps_for_area():
    assert steps_for_area(100, 100) == 1
    assert steps_for_area(300, 100) == 3
    assert steps_for_area(30, 100) == 1  # at least one pixel
    assert steps_for_area(300, 20) == 15


def _toy_setup():
    """4x4 one-channel image of ones; score = mean of the top-left 2x2."""
    image = torch.ones(1, 4, 4)
    # order: (0,0) in, (3,3) out, (0,1) in, (1,0) in, (1,1) in, rest
    sal = torch.zeros(4, 4)
    for rank, (r, c) in enumerate([(0, 0), (3, 3), (0, 1), (1, 0), (1, 1)]):
        sal[r, c] = 10 - rank

    def score_fn(batch):
        return batch[:, 0, :2, :2].mean(dim=(1, 2))

    return image, sal, score_fn


def test_deletion_of_a_toy_scorer_matches_hand_computation():
    image, sal, score_fn = _toy_setup()
    curve = perturbation_curve(image, sal, score_fn, 'deletion', num_steps=5,
                               step_pixels=1, fill=torch.zeros(1, 4, 4),
                               batch_size=2)
    assert curve.tolist() == pytest.approx([1, .75, .75, .5, .25, 0])
    assert curve_auc(curve) == pytest.approx(
        0.2 * (0.5 + .75 + .75 + .5 + .25 + 0))
    two = perturbation_curve(image, sal, score_fn, 'deletion', num_steps=2,
                             step_pixels=2, fill=torch.zeros(1, 4, 4))
    assert two.tolist() == pytest.approx([1, .75, .25])


def test_insertion_of_a_toy_scorer_matches_hand_computation():
    image, sal, score_fn = _toy_setup()
    curve = perturbation_curve(image, sal, score_fn, 'insertion',
                               num_steps=5, step_pixels=1,
                               fill=torch.zeros(1, 4, 4), batch_size=4)
    assert curve.tolist() == pytest.approx([0, .25, .25, .5, .75, 1])
    assert curve_auc(curve) == pytest.approx(
        0.2 * (0 + .25 + .25 + .5 + .75 + 0.5))
    with pytest.raises(ValueError):
        perturbation_curve(image, sal, score_fn, 'blur', 5, 1, image)


def test_box_iou_and_well_detected_matching():
    gt = torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.],
                       [50., 50., 60., 60.]])
    pred = torch.tensor([[0., 0., 10., 10.5],  # IoU 10/10.5 = 0.952
                         [20., 20., 30., 32.],  # IoU 100/120 = 0.833
                         [0., 0., 10., 10.]])  # exact, other class
    assert box_iou(gt[:1], pred[:1])[0, 0].item() == pytest.approx(
        100 / 105)
    labels_gt = torch.tensor([0, 0, 0])
    labels_pred = torch.tensor([0, 0, 1])
    match = match_well_detected(gt, pred, labels_gt, labels_pred, 0.9)
    assert match.tolist() == [0, -1, -1]
    # class-agnostic: the exact box (index 2) wins for the first object
    assert match_well_detected(gt, pred, iou_thr=0.8).tolist() == [2, 1, -1]
    assert match_well_detected(gt, pred[:0]).tolist() == [-1, -1, -1]


def test_tracked_score_best_same_class_candidate_above_iou():
    ref = torch.tensor([0., 0., 10., 10.])
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 12.],
                          [0., 0., 10., 30.], [0., 0., 10., 10.]])
    scores = torch.tensor([0.2, 0.6, 0.9, 0.95])
    labels = torch.tensor([0, 0, 0, 1])
    # IoU: 1, 0.83, 0.33 (too low), other class
    assert tracked_score(boxes, scores, labels, ref, 0) == pytest.approx(0.6)
    assert tracked_score(boxes[:0], scores[:0], labels[:0], ref, 0) == 0.0


def test_object_metrics_and_metric_aggregation(tmp_path):
    boxes = torch.tensor([[0., 0., 4., 4.], [4., 4., 8., 8.]])
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :4, :4] = True
    masks[1, 4:, 4:] = True
    heat = torch.zeros(8, 8)
    heat[1, 1] = 1.0
    rec = object_metrics(heat, 0, boxes, masks)
    assert rec['pg_box'] == rec['pg_mask'] == 1.0
    assert rec['epg_box'] == rec['epg_mask'] == 1.0
    assert rec['odi_box'] == rec['odi_mask'] == 0.0
    assert rec['vea'][0] == pytest.approx(1 / 16)

    metric = ExplanationMetric(out_file=str(tmp_path / 'm.json'))
    sample = dict(
        targets=('score', ), explain_time=0.5, num_explained=2,
        pred_instances=dict(
            bboxes=boxes.clone(), scores=torch.tensor([0.9, 0.8]),
            labels=torch.tensor([0, 0]),
            heatmaps=torch.stack([heat, heat.flip(0).flip(1)])[:, None]),
        gt_instances=dict(
            bboxes=boxes, labels=torch.tensor([0, 0]), masks=masks.numpy(),
            deletion_curve=torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]]),
            insertion_curve=torch.tensor([[0.0, 0.5, 1.0],
                                          [float('nan')] * 3])))
    metric.process({}, [sample])
    out = metric.compute_metrics(metric.results)
    assert out['pg_box'] == 100.0 and out['epg_mask'] == 100.0
    assert out['odi_box'] == 0.0 and out['num_objects'] == 2
    assert out['deletion_auc'] == pytest.approx(100 * (0.5 + 1.0) / 2)
    assert out['insertion_auc'] == pytest.approx(50.0)
    assert out['sec_per_explanation'] == pytest.approx(0.25)
    assert metric.curves['deletion'] == pytest.approx([1.0, 0.75, 0.5])
    assert (tmp_path / 'm.json').is_file()
