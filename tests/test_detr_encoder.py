"""DETR's ``feature='encoder'``: ODAM on the transformer encoder's output
memory, against an independent autograd reference.

The reference runs MMDetection's own pieces (``pre_transformer``,
``forward_encoder``, ``pre_decoder``, ``forward_decoder``, the head) with the
memory as a leaf in its own (B, h * w, C) token layout, finds each detection's
query by exhaustive search over all queries by score and box, and places
ReLU(sum_c dY/dM_c * M_c) by the nominal stride 32, bilinear between cell
centres and zero beyond the grid, cropped to the unpadded input.
"""
import numpy as np
import pytest
import torch
from mmdet.apis import init_detector
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.config import Config

import mmdet_odam  # noqa: F401
from mmdet_odam.apis import explain
from mmdet_odam.apis.explain import build_test_pipeline
from mmdet_odam.explainers import ATTRIBUTES, build_adapter
from heatmap_reference import to_image

TINY = 'configs/detr/detr_tiny_synthetic-crowd.py'
R50 = 'configs/detr/detr_r50_8xb2-150e_coco.py'
STRIDE = 32  # C5 of ResNet, mapped 1x1 by the ChannelMapper: by hand


def _model(config, size, max_per_img, seed=0):
    """Random-weight DETR whose test pipeline keeps an (h, w) image as is."""
    torch.manual_seed(seed)
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.max_per_img = max_per_img
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (size[1], size[0])
    return init_detector(cfg, None, device='cpu').eval()


def _image(size):
    rng = np.random.default_rng(2)
    img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    img[size[0] // 4:size[0] // 2, size[1] // 3:size[1] // 2] = (40, 200, 40)
    return img




def _reference_maps(model, image, det):
    """(5, H, W) maps of the query that has the detection's score and box,
    by autograd w.r.t. the encoder memory."""
    data = build_test_pipeline(model, image)(dict(img=image, img_id=0))
    batch = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
        False)
    inputs, samples = batch['inputs'], batch['data_samples']
    img_h, img_w = samples[0].metainfo['img_shape']
    assert (img_h, img_w) == image.shape[:2]  # not resized
    with torch.no_grad():
        feats = model.extract_feat(inputs)
        enc_in, dec_in = model.pre_transformer(feats, samples)
        memory = model.forward_encoder(**enc_in)['memory']
    memory = memory.detach().requires_grad_()  # (1, h * w, C)
    dec_in.update(model.pre_decoder(memory=memory)[0])
    hidden = model.forward_decoder(**dec_in)['hidden_states']
    cls, reg = model.bbox_head(hidden)
    score = cls[-1][0].softmax(-1)[:, int(det.labels)]
    box = bbox_cxcywh_to_xyxy(reg[-1][0]) * reg.new_tensor(
        [img_w, img_h, img_w, img_h])
    clamped = torch.stack([box[:, 0].clamp(0, img_w), box[:, 1].clamp(
        0, img_h), box[:, 2].clamp(0, img_w), box[:, 3].clamp(0, img_h)], 1)
    hit = ((score - det.scores).abs() < 1e-6) & (
        (clamped - det.bboxes).abs().amax(1) < 1e-3)
    assert int(hit.sum()) == 1, 'detection not found among the queries'
    query = int(hit.nonzero()[0, 0])
    extents = box[query] * box.new_tensor([-1, -1, 1, 1])
    grid_h, grid_w = feats[-1].shape[-2:]
    maps = []
    for y in torch.cat([score[query, None], extents]):
        grad, = torch.autograd.grad(y, memory, retain_graph=True)
        cells = torch.relu((grad[0] * memory[0].detach()).sum(1))  # (h * w)
        full = to_image(cells.reshape(grid_h, grid_w), STRIDE, (img_h, img_w))
        maps.append(full / full.max())
    return torch.stack(maps)


# seeds whose random weights give every attribute some positive evidence
# (with others a whole map can be ReLU'd to zero, which tests less)
@pytest.mark.parametrize('config, size, max_per_img, seed', [
    (TINY, (96, 136), 3, 0),   # 3 x 5 cells, the last column partly outside
    (R50, (188, 256), 2, 1),   # 6 x 8 cells, the last row partly outside
])
def test_encoder_maps_equal_autograd_on_the_memory(config, size, max_per_img,
                                                   seed):
    model = _model(config, size, max_per_img, seed)
    image = _image(size)
    out = explain(model, image, targets=ATTRIBUTES, score_thr=0.0,
                  explainer=dict(type='ODAM', feature='encoder',
                                 smooth='none', method='exact'))
    pred = out.pred_instances
    assert len(pred) == max_per_img
    assert pred.heatmaps.shape == (max_per_img, len(ATTRIBUTES), *size)
    for i in range(len(pred)):
        expected = _reference_maps(model, image, pred[i])
        assert bool((expected.amax(dim=(1, 2)) > 0).all())
        torch.testing.assert_close(pred.heatmaps.render([i])[0], expected,
                                   atol=1e-4,
                                   rtol=0)


def test_encoder_leaf_is_the_memory_on_the_neck_grid():
    """The leaf is the encoder output (no encoder graph), (B, C, h, w) on the
    neck's grid and stride; detections equal the model's own predict."""
    size = (96, 136)
    model = _model(TINY, size, 3)
    image = _image(size)
    data = build_test_pipeline(model, image)(dict(img=image, img_id=0))
    batch = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
        False)
    with torch.enable_grad():
        state = build_adapter(model, 'encoder').forward(
            batch['inputs'], batch['data_samples'])
    leaf, = state.activations
    neck = model.extract_feat(batch['inputs'])[-1]
    assert leaf.is_leaf and leaf.requires_grad
    assert leaf.shape == (1, model.embed_dims, *neck.shape[-2:]) == \
        (1, 64, 3, 5)
    assert state.strides == [STRIDE]
    with torch.no_grad():
        expected = model.predict(batch['inputs'], batch['data_samples'])
    got, want = state.results[0], expected[0].pred_instances
    torch.testing.assert_close(got.bboxes, want.bboxes)
    torch.testing.assert_close(got.scores, want.scores)
    assert torch.equal(got.labels, want.labels)


def test_unknown_feature_lists_the_detr_features():
    model = _model(TINY, (96, 136), 3)
    with pytest.raises(ValueError) as err:
        explain(model, _image((96, 136)),
                explainer=dict(type='ODAM', feature='memory'))
    message = str(err.value)
    assert '\n' not in message
    assert "'memory'" in message and \
        "choose from ('neck', 'backbone', 'encoder')" in message
