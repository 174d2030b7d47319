"""``mmdet_odam.apis.explain`` is pure (the model's config, mode and
parameters are left as found) and takes every documented input kind, with a
clear error for the others before the model runs."""
import copy
from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs/fcos/fcos_tiny_synthetic-crowd.py'
CHECKPOINT = REPO / 'checkpoints/fcos_tiny_synthetic-crowd.pth'
IMAGE = REPO / 'demo/crowd.png'


@pytest.fixture(scope='module')
def model():
    from mmdet_odam.apis import init_explained_detector
    return init_explained_detector(str(CONFIG), str(CHECKPOINT))


def _explain(model, imgs, **kwargs):
    from mmdet_odam.apis import explain
    kwargs.setdefault('targets', ('score', ))
    return explain(model, imgs, **kwargs)


def _same_result(a, b):
    pa, pb = a.pred_instances, b.pred_instances
    assert len(pa) == len(pb) > 0
    assert torch.equal(pa.bboxes, pb.bboxes)
    assert torch.allclose(pa.heatmaps.to_tensor(), pb.heatmaps.to_tensor(), atol=1e-6)


def test_explain_leaves_config_mode_and_parameters_unchanged(model):
    config_before = copy.deepcopy(model.cfg.to_dict())
    params_before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        from_array = _explain(model, mmcv.imread(str(IMAGE)))
        assert model.training and all(m.training for m in model.modules())
        assert model.cfg.to_dict() == config_before
        # a path after an array on the same model (the pipeline was shared)
        from_path = _explain(model, str(IMAGE))
    finally:
        model.eval()
    _same_result(from_array, from_path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, params_before[key]), key
    assert all(p.grad is None for p in model.parameters())


def test_mixed_inputs_equal_single_calls(model):
    """Paths, ``pathlib.Path`` and arrays (BGR, grayscale (H, W), BGRA) in
    one list give the results of separate calls on the same pixels."""
    bgr = mmcv.imread(str(IMAGE))
    gray = bgr[:, :, 1].copy()
    bgra = np.concatenate([bgr, np.full_like(bgr[:, :, :1], 255)], axis=2)
    results = _explain(model, [IMAGE, bgr, gray, bgra, str(IMAGE)])
    assert len(results) == 5
    _same_result(results[0], _explain(model, str(IMAGE)))
    _same_result(results[1], results[0])  # the file's own pixels
    _same_result(results[2], _explain(model, np.repeat(gray[..., None], 3, 2)))
    _same_result(results[3], results[1])  # alpha dropped
    _same_result(results[4], results[0])


def test_single_target_name_and_explainer_name(model):
    by_name = _explain(model, str(IMAGE), targets='score', explainer='ODAM')
    assert by_name.metainfo['targets'] == ('score', )
    assert by_name.pred_instances.heatmaps.shape[1] == 1
    _same_result(by_name, _explain(model, str(IMAGE),
                                   explainer=dict(type='ODAM')))


@pytest.mark.parametrize('imgs, error, words', [
    (torch.zeros(3, 8, 8), TypeError, 'torch.Tensor'),
    (np.zeros((0, 0, 3), np.uint8), ValueError, 'empty'),
    (np.zeros((0, 0), np.uint8), ValueError, 'empty'),
    (np.zeros((8, 8, 2), np.uint8), ValueError, 'shape'),
    (np.zeros((8, 8, 3), bool), TypeError, 'dtype'),
    (42, TypeError, 'int'),
    ('no/such/image.png', FileNotFoundError, 'no/such/image.png'),
])
def test_bad_images_are_clear_errors(model, imgs, error, words):
    with pytest.raises(error, match=words):
        _explain(model, imgs)


@pytest.mark.parametrize('kwargs, error, words', [
    (dict(targets='scores'), ValueError, 'choose from'),
    (dict(targets=()), ValueError, 'choose from'),
    (dict(explainer='odam'), ValueError, 'registered: .*ODAM'),
    (dict(explainer=3), TypeError, 'explain_batch'),
])
def test_bad_options_are_clear_errors(model, kwargs, error, words):
    with pytest.raises(error, match=words):
        _explain(model, str(IMAGE), **kwargs)


def test_empty_list_gives_empty_list(model):
    assert _explain(model, []) == []
