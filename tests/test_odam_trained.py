"""ODAM on the bundled trained tiny FCOS: instance specificity and the
model-parameter randomisation sanity check (App. A.5.1)."""
import os.path as osp

import mmcv
import pytest
import torch
from mmdet.apis import init_detector
from mmdet.structures.bbox import bbox_overlaps

import mmdet_odam  # noqa: F401
from mmdet_odam.apis import explain
from mmdet_odam.explainers import ODAM

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs/fcos/fcos_tiny_synthetic-crowd.py')
CHECKPOINT = osp.join(ROOT, 'checkpoints/fcos_tiny_synthetic-crowd.pth')
IMAGE = osp.join(ROOT, 'demo/crowd.png')


@pytest.fixture(scope='module')
def model():
    return init_detector(CONFIG, CHECKPOINT, device='cpu').eval()


@pytest.fixture(scope='module')
def image():
    return mmcv.imread(IMAGE)


def box_mask(box, shape):
    mask = torch.zeros(shape, dtype=torch.bool)
    x1, y1, x2, y2 = box.round().long().tolist()
    mask[max(y1, 0):y2, max(x1, 0):x2] = True
    return mask


def energy_in(heatmap, mask):
    return float(heatmap[mask].sum() / heatmap.sum().clamp(min=1e-12))


def pearson(a, b):
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp(min=1e-12))


def test_trained_maps_concentrate_in_their_own_box(model, image):
    out = explain(model, image, targets=('score', ), score_thr=0.3)
    dets = out.pred_instances
    assert len(dets) >= 5
    fractions = [energy_in(maps[0], box_mask(box, image.shape[:2]))
                 for box, maps in zip(dets.bboxes, dets.heatmaps.to_tensor())]
    # boxes cover a few percent of the image each, yet hold most of the heat
    assert sum(fractions) / len(fractions) > 0.5


def test_overlapping_detections_get_distinct_maps_unlike_gradcam(model, image):
    out = explain(model, image, explainer=ODAM(), targets=('score', ),
                  score_thr=0.3)
    cam = explain(model, image, explainer=ODAM(smooth='global'),
                  targets=('score', ), score_thr=0.3)
    dets = out.pred_instances
    ious = bbox_overlaps(dets.bboxes, dets.bboxes)
    ious.fill_diagonal_(0)
    shape = image.shape[:2]
    pairs = []
    for i, j in (ious > 0.1).nonzero().tolist():
        box_i, box_j = (box_mask(dets.bboxes[k], shape) for k in (i, j))
        own_i, own_j = box_i & ~box_j, box_j & ~box_i
        # both boxes keep a sizeable part of their own
        if i < j and own_i.sum() > 0.2 * box_i.sum() and \
                own_j.sum() > 0.2 * box_j.sum():
            pairs.append((i, j, own_i, own_j))
    assert pairs, 'the demo image should contain overlapping detections'
    for i, j, own_i, own_j in pairs:
        map_i, map_j = dets.heatmaps[i, 0], dets.heatmaps[j, 0]
        # each map prefers the part of its own box the other box lacks
        assert energy_in(map_i, own_i) > energy_in(map_i, own_j)
        assert energy_in(map_j, own_j) > energy_in(map_j, own_i)
        # and the two ODAM maps are less alike than the two Grad-CAM maps
        cam_i, cam_j = (cam.pred_instances.heatmaps[i, 0],
                        cam.pred_instances.heatmaps[j, 0])
        assert pearson(map_i, map_j) < pearson(cam_i, cam_j)


def test_randomised_weights_change_the_maps(model, image):
    """App. A.5.1: maps of an untrained (randomly initialised) model differ
    from the trained model's, so ODAM depends on the learned parameters."""
    trained = explain(model, image, targets=('score', ), score_thr=0.3)
    torch.manual_seed(0)
    untrained = init_detector(CONFIG, None, device='cpu').eval()
    rand = explain(untrained, image, targets=('score', ), score_thr=0.0)
    assert len(rand.pred_instances) > 0
    mean_trained = trained.pred_instances.heatmaps[:, 0].mean(0)
    mean_rand = rand.pred_instances.heatmaps[:, 0].mean(0)
    assert pearson(mean_trained, mean_rand) < 0.5
