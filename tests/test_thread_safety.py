"""Explaining in one thread changes nothing another thread sees: plain
inference on the same model instance, run while explanations run, is
bit-identical to inference run alone, and the explanations equal those made
alone. (Candidate tracking and patch convs run on private copies of the heads
that share their weights; no function of MMDetection is replaced.)"""
import threading

import numpy as np
import pytest
import torch
from mmdet.apis import inference_detector, init_detector
from mmengine.config import Config

import mmdet_odam  # noqa: F401
from mmdet_odam.apis import explain

CONFIGS = {
    'fcos': 'configs/fcos/fcos_tiny_synthetic-crowd.py',
    'faster_rcnn': 'configs/faster_rcnn/faster-rcnn_tiny_synthetic-crowd.py',
}


def _model(family):
    torch.manual_seed(0)
    cfg = Config.fromfile(CONFIGS[family])
    test_cfg = cfg.model.test_cfg
    rcnn = 'rcnn' in test_cfg
    (test_cfg.rcnn if rcnn else test_cfg).max_per_img = 8
    # random weights score low: keep every candidate
    (test_cfg.rcnn if rcnn else test_cfg).score_thr = 0.0
    model = init_detector(cfg, None, device='cpu')
    if family == 'fcos':  # trained weights: GroupNorm tower, real detections
        from mmdet_odam.utils import load_checkpoint_checked
        load_checkpoint_checked(model,
                                'checkpoints/fcos_tiny_synthetic-crowd.pth')
    return model.eval()


def _pred(sample):
    p = sample.pred_instances
    return p.bboxes.clone(), p.scores.clone(), p.labels.clone(), \
        sorted(p.keys())


@pytest.mark.parametrize('family, method', [('fcos', 'fast'),
                                            ('fcos', 'exact'),
                                            ('faster_rcnn', 'exact')])
def test_inference_unchanged_while_another_thread_explains(family, method):
    model = _model(family)
    rng = np.random.default_rng(0)
    plain_img = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    explained_img = np.ascontiguousarray(plain_img[::-1])
    explainer = dict(type='ODAM', method=method)
    kwargs = dict(explainer=explainer, targets=('score', 'x2'),
                  score_thr=0.0)
    alone_plain = _pred(inference_detector(model, plain_img))
    alone_maps = explain(model, explained_img, **kwargs)
    assert len(alone_maps.pred_instances) > 0

    errors, maps = [], []
    done = threading.Event()

    def explain_loop():
        try:
            for _ in range(3):
                maps.append(explain(model, explained_img, **kwargs))
        except BaseException as e:  # reported by the main thread
            errors.append(e)
        finally:
            done.set()

    worker = threading.Thread(target=explain_loop)
    worker.start()
    runs = 0
    while not done.is_set() or runs < 3:
        bboxes, scores, labels, keys = _pred(
            inference_detector(model, plain_img))
        assert keys == alone_plain[3]
        assert torch.equal(bboxes, alone_plain[0])
        assert torch.equal(scores, alone_plain[1])
        assert torch.equal(labels, alone_plain[2])
        runs += 1
    worker.join()
    assert not errors, errors
    for sample in maps:
        assert torch.equal(sample.pred_instances.bboxes,
                           alone_maps.pred_instances.bboxes)
        assert torch.allclose(sample.pred_instances.heatmaps.to_tensor(),
                              alone_maps.pred_instances.heatmaps.to_tensor(),
                              atol=1e-6)


def test_private_copies_change_nothing_shared():
    """A weight-sharing copy shares tensors but not modules; a method copy
    with replaced globals leaves the class and its module as they were."""
    from mmdet.models.dense_heads import base_dense_head
    from mmdet.models.utils import filter_scores_and_topk

    from mmdet_odam.utils.isolation import (bound_with_globals,
                                            shared_weights_copy)
    model = _model('fcos')
    head = model.bbox_head
    copy = shared_weights_copy(head)
    assert copy is not head and copy.conv_cls is not head.conv_cls
    assert copy.conv_cls.weight is head.conv_cls.weight
    copy.conv_cls.padding = (0, 0)
    assert head.conv_cls.padding == (1, 1)
    calls = []
    bound = bound_with_globals(
        copy, '_predict_by_feat_single',
        filter_scores_and_topk=lambda *a, **k: calls.append(1) or
        filter_scores_and_topk(*a, **k))
    assert bound.__self__ is copy
    assert base_dense_head.filter_scores_and_topk is filter_scores_and_topk
    assert type(head)._predict_by_feat_single.__globals__[
        'filter_scores_and_topk'] is filter_scores_and_topk
    with pytest.raises(TypeError, match='overrides _predict_by_feat_single'):
        bound_with_globals(copy, '_predict_by_feat_single', no_such_name=1)
