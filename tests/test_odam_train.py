"""Odam-Train: pair losses against hand computation, grouping per object and
image, gradient flow, degenerate batches, the hook in MMEngine's Runner."""
import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_odam.models import OdamTrainLoss, odam_pair_losses
from mmdet_odam.models.odam_train import best_per_object, negative_pairs

REPO = Path(__file__).resolve().parents[1]
TINY = {
    'fcos': 'configs/fcos/fcos_tiny_synthetic-crowd.py',
    'retinanet': 'configs/retinanet/retinanet_tiny_synthetic-crowd.py',
    'atss': 'configs/atss/atss_tiny_synthetic-crowd.py',
    'faster-rcnn': 'configs/faster_rcnn/faster-rcnn_tiny_synthetic-crowd.py',
    'detr': 'configs/detr/detr_tiny_synthetic-crowd.py',
}


# ----------------------------------------------------------------------------
# pure loss math
# ----------------------------------------------------------------------------
def test_pair_losses_match_hand_computation():
    # object 0: best = row 0, another positive at 60 degrees; object 1: one
    # positive orthogonal-ish to the best of object 0
    maps = torch.tensor([[1., 0., 0.], [0.5, math.sqrt(3) / 2, 0.],
                         [0., 3., 4.]])
    groups = torch.tensor([0, 0, 1])
    best = torch.tensor([0, 2])
    images = torch.tensor([0, 0])
    negatives = torch.tensor([[False, True], [True, False]])
    con, sep, num = odam_pair_losses(maps, groups, images, best, negatives)
    cos_01 = 0.5
    cos_02 = 0.0  # clamped to eps
    cos_12 = (math.sqrt(3) / 2 * 3) / 5  # best of object 1 vs row 1
    eps = 1e-4
    expected_con = -math.log(cos_01)
    expected_sep = -math.log(1 - max(cos_02, eps)) - math.log(1 - cos_12) - \
        math.log(1 - max(cos_02, eps))  # (best0, row2), (best1, rows 0, 1)
    assert num == 1 + 3
    assert con.item() == pytest.approx(expected_con, rel=1e-5)
    assert sep.item() == pytest.approx(expected_sep, rel=1e-5)


def test_pairs_stay_inside_images_and_respect_negative_mode():
    # image 0 holds object 0, image 1 holds object 1 with an identical map:
    # a cross-image pair would add -log(1 - (1 - eps)) = 9.2
    maps = torch.tensor([[1., 0.], [1., 0.]])
    groups = torch.tensor([0, 1])
    best = torch.tensor([0, 1])
    con, sep, num = odam_pair_losses(maps, groups, torch.tensor([0, 1]), best,
                                     torch.ones(2, 2, dtype=torch.bool))
    assert num == 0 and con.item() == 0 and sep.item() == 0
    # same image, but 'overlap' mode with disjoint boxes: no pair either
    boxes = torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.]])
    assert not negative_pairs(boxes, 'overlap').any()
    assert negative_pairs(boxes, 'all').tolist() == [[False, True],
                                                     [True, False]]
    # 'crowd': GT IoU > 0.5 only. IoU(0, 1) = 80 / 120, IoU(1, 2) = 60 / 140,
    # IoU(0, 2) = 40 / 160
    boxes = torch.tensor([[0., 0., 10., 10.], [2., 0., 12., 10.],
                          [6., 0., 16., 10.]])
    assert negative_pairs(boxes, 'crowd').tolist() == [
        [False, True, False], [True, False, False], [False, False, False]]
    assert negative_pairs(boxes, 'overlap').sum() == 6


def test_zero_maps_are_skipped_and_empty_input_is_zero():
    maps = torch.tensor([[1., 0.], [0., 0.]], requires_grad=True)
    con, sep, num = odam_pair_losses(maps, torch.tensor([0, 0]),
                                     torch.tensor([0]), torch.tensor([0]),
                                     torch.zeros(1, 1, dtype=torch.bool))
    assert num == 0 and torch.isfinite(con) and torch.isfinite(sep)
    (con + sep).backward()
    assert torch.isfinite(maps.grad).all()
    empty = torch.zeros(0, 4, requires_grad=True)
    con, sep, num = odam_pair_losses(empty, torch.zeros(0, dtype=torch.long),
                                     torch.zeros(0, dtype=torch.long),
                                     torch.zeros(0, dtype=torch.long),
                                     torch.zeros(0, 0, dtype=torch.bool))
    assert num == 0 and con.item() == 0


def test_best_per_object_takes_highest_iou_first_on_ties():
    gt_index = torch.tensor([1, 0, 1, 1, 0])
    ious = torch.tensor([0.5, 0.7, 0.9, 0.9, 0.2])
    assert best_per_object(gt_index, ious, 3).tolist() == [1, 2, -1]


def test_loss_module_groups_per_image_and_normalises_by_pairs():
    """Two images; the module's value equals the hand sum over within-image
    pairs divided by the number of pairs."""
    loss = OdamTrainLoss(loss_weight=1.0, negatives='all')
    maps0 = torch.tensor([[[1., 0.]], [[1., 1.]], [[0., 1.]]])  # (3, 1, 2)
    pos0 = InstanceData(maps=maps0, gt_index=torch.tensor([0, 0, 1]),
                        ious=torch.tensor([0.9, 0.5, 0.8]))
    # image 1: one object, one positive identical to image 0's rows
    pos1 = InstanceData(maps=torch.tensor([[[1., 0.]]]),
                        gt_index=torch.tensor([0]), ious=torch.tensor([0.6]))
    boxes = [torch.tensor([[0., 0., 4., 4.], [2., 2., 6., 6.]]),
             torch.tensor([[0., 0., 4., 4.]])]
    out = loss([pos0, pos1], boxes)
    c = 1 / math.sqrt(2)
    eps = 1e-4
    con = -math.log(c)                              # best0=row0 vs row1
    # best0 vs row2 (cos 0 -> eps); best1 = row2 vs rows 0 (eps) and 1 (c)
    sep = -2 * math.log(1 - eps) - math.log(1 - c)
    num = 1 + 1 + 2
    assert out['loss_odam_con'].item() == pytest.approx(con / num, rel=1e-5)
    assert out['loss_odam_sep'].item() == pytest.approx(sep / num, rel=1e-5)


def test_best_positive_is_the_highest_iou_not_the_first():
    """Each object's best positive (the anchor of all its pairs) is the one
    of highest IoU, listed neither first nor in group order. Maps are 2-D
    directions at known angles, so every cosine is known by hand."""
    loss = OdamTrainLoss(loss_weight=1.0, negatives='all')
    angles = [0., 85., 25., 45., 60.]  # degrees, one per positive
    gt_index = torch.tensor([0, 1, 0, 0, 1])
    ious = torch.tensor([0.3, 0.5, 0.9, 0.6, 0.8])  # best: rows 2 and 4
    maps = torch.tensor([[[math.cos(math.radians(a)),
                           math.sin(math.radians(a))]] for a in angles])
    maps = maps * torch.arange(1., 6.)[:, None, None]  # norms do not matter
    positives = InstanceData(maps=maps, gt_index=gt_index, ious=ious)
    out = loss([positives], [torch.tensor([[0., 0., 4., 4.],
                                           [2., 2., 6., 6.]])])

    def cos(degrees):
        return math.cos(math.radians(degrees))

    # object 0: best row 2 (25 deg) vs rows 0 (0 deg) and 3 (45 deg);
    # object 1: best row 4 (60 deg) vs row 1 (85 deg)
    con = -math.log(cos(25)) - math.log(cos(20)) - math.log(cos(25))
    # row 2 vs object 1's rows 1 and 4; row 4 vs object 0's rows 0, 2, 3
    sep = -math.log(1 - cos(60)) - math.log(1 - cos(35)) - \
        math.log(1 - cos(60)) - math.log(1 - cos(35)) - math.log(1 - cos(15))
    num = 3 + 5
    assert out['loss_odam_con'].item() == pytest.approx(con / num, rel=1e-5)
    assert out['loss_odam_sep'].item() == pytest.approx(sep / num, rel=1e-5)


def hand_odam_losses(positives, gt_boxes, loss: OdamTrainLoss):
    """Eq. 3 summed object by object, pair by pair, from recorded positives.

    Independent of ``odam_pair_losses``: per image, each object's best
    positive (highest IoU, first on ties) is compared with every other
    non-zero map of the same image: its own object's (consistency) and, per
    ``loss.negatives``, other objects' (separation); never across images.

    Returns:
        tuple[float, float]: ``loss_odam_con`` and ``loss_odam_sep``.
    """
    con = sep = 0.0
    pairs = 0
    for pos, boxes in zip(positives, gt_boxes):
        maps = pos.maps.detach().flatten(1).double()
        norms = maps.norm(dim=1)
        gt_index, ious = pos.gt_index.tolist(), pos.ious.tolist()
        for obj in range(len(boxes)):
            members = [i for i, g in enumerate(gt_index) if g == obj]
            if not members:
                continue
            best = max(members, key=lambda i: (ious[i], -i))
            if norms[best] <= 1e-12:
                continue
            for i, other in enumerate(gt_index):
                if i == best or norms[i] <= 1e-12:
                    continue
                cosine = float(maps[best] @ maps[i] / (norms[best] *
                                                       norms[i]))
                cosine = min(max(cosine, loss.eps), 1 - loss.eps)
                if other == obj:
                    con -= math.log(cosine)
                    pairs += 1
                elif _negative(boxes[obj], boxes[other], loss.negatives):
                    sep -= math.log(1 - cosine)
                    pairs += 1
    scale = loss.loss_weight / max(pairs, 1)
    return con * scale, sep * scale


def _negative(box_a, box_b, mode):
    """Whether positives of the object in box_b are negatives for box_a's."""
    if mode == 'all':
        return True
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = box_a.tolist(), \
        box_b.tolist()
    inter = max(0., min(ax2, bx2) - max(ax1, bx1)) * \
        max(0., min(ay2, by2) - max(ay1, by1))
    if mode == 'overlap':
        return inter > 0
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union > 0.5  # 'crowd'


def record_loss_inputs(loss: OdamTrainLoss) -> list:
    """Make ``loss`` record its (positives, gt_boxes) on every call."""
    calls = []
    forward = loss.forward

    def recording(positives, gt_boxes):
        calls.append((positives, gt_boxes))
        return forward(positives, gt_boxes)

    loss.forward = recording
    return calls


def assert_losses_equal_hand_sum(losses, recorded, loss: OdamTrainLoss):
    """Logged losses equal the hand sum over the recorded positives, which
    form pairs of both kinds."""
    positives, gt_boxes = recorded
    con, sep = hand_odam_losses(positives, gt_boxes, loss)
    assert con > 0 and sep > 0
    assert float(losses['loss_odam_con']) == pytest.approx(con, rel=1e-4)
    assert float(losses['loss_odam_sep']) == pytest.approx(sep, rel=1e-4)


# ----------------------------------------------------------------------------
# detectors
# ----------------------------------------------------------------------------
def _build(name, **cfg_updates):
    import mmdet_odam  # noqa: F401
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    cfg = Config.fromfile(str(REPO / TINY[name]))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model.train()


def _batch(boxes_per_image, size=(128, 160), seed=0):
    from mmdet.structures import DetDataSample
    g = torch.Generator().manual_seed(seed)
    samples = []
    for boxes in boxes_per_image:
        meta = dict(img_shape=size, pad_shape=size, batch_input_shape=size,
                    ori_shape=size, scale_factor=(1., 1.))
        sample = DetDataSample(metainfo=meta)
        boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        sample.gt_instances = InstanceData(
            bboxes=boxes, labels=torch.zeros(len(boxes), dtype=torch.long))
        sample.ignored_instances = InstanceData(
            bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
        samples.append(sample)
    return torch.randn(len(samples), 3, *size, generator=g), samples


CROWD = [[20., 20., 60., 110.], [36., 22., 76., 112.], [100., 10., 140., 90.]]


@pytest.mark.parametrize('name', list(TINY))
def test_every_family_logs_odam_losses_of_its_positives(name):
    """Two images, overlapping objects: the logged losses equal the hand
    sum over the positives the family recorded (grouping per object and
    image, best positive by IoU, 'overlap' negatives)."""
    from mmdet_odam.models import install_odam_train
    model = _build(name)
    odam = OdamTrainLoss()
    recorded = record_loss_inputs(odam)
    install_odam_train(model, odam)
    inputs, samples = _batch([CROWD, CROWD[:2]])
    losses = model.loss(inputs, samples)
    recorded, = recorded
    for boxes, sample in zip(recorded[1], samples):
        assert torch.equal(boxes, sample.gt_instances.bboxes)
    assert all(len(pos) > 0 for pos in recorded[0])
    assert_losses_equal_hand_sum(losses, recorded, odam)


def test_a_duplicated_image_adds_no_cross_image_pairs():
    """A batch of the same image twice gives the same losses as the image
    alone: pairs across the two copies (identical maps, cosine ~1, separation
    -log(eps) = 9.2 each) would raise L_sep sharply."""
    from mmdet_odam.models.odam_train import odam_train_losses
    model = _build('fcos')
    odam = OdamTrainLoss(negatives='all')
    inputs, samples = _batch([CROWD])
    single = odam_train_losses(model, odam, inputs, samples, model.loss)
    inputs2, samples2 = _batch([CROWD, CROWD])
    inputs2[1] = inputs2[0]
    double = odam_train_losses(model, odam, inputs2, samples2, model.loss)
    for key in ('loss_odam_con', 'loss_odam_sep'):
        assert single[key] > 0
        torch.testing.assert_close(double[key], single[key], rtol=1e-4,
                                   atol=1e-6)


@pytest.mark.parametrize('name', ['fcos', 'faster-rcnn'])
def test_zero_and_one_gt_images_train_without_nan(name):
    from mmdet_odam.models import install_odam_train
    model = _build(name)
    install_odam_train(model, OdamTrainLoss())
    inputs, samples = _batch([[], CROWD[:1]])
    losses = model.loss(inputs, samples)
    total = sum(v if isinstance(v, torch.Tensor) else sum(v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    for p in model.parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all()


def _odam_only_grads(model, second_order=False):
    from mmdet_odam.models.odam_train import odam_train_losses
    odam = OdamTrainLoss(second_order=second_order)
    inputs, samples = _batch([CROWD])
    losses = odam_train_losses(model, odam, inputs, samples, model.loss)
    model.zero_grad()
    (losses['loss_odam_con'] + losses['loss_odam_sep']).backward()

    def reached(module):
        return any(p.grad is not None and bool(p.grad.abs().sum() > 0)
                   for p in module.parameters())

    return reached


def test_loss_reaches_backbone_and_neck_and_second_order_the_head():
    model = _build('fcos')
    reached = _odam_only_grads(model)
    assert reached(model.backbone) and reached(model.neck)
    # gradients are constants (authors' choice): the head is untouched ...
    assert not reached(model.bbox_head)
    # ... unless second order is asked for
    reached = _odam_only_grads(model, second_order=True)
    assert reached(model.backbone) and reached(model.bbox_head.cls_convs)


def test_rcnn_loss_reaches_backbone_through_roi_features():
    model = _build('faster-rcnn')
    reached = _odam_only_grads(model)
    assert reached(model.backbone) and reached(model.neck)


def test_a_few_steps_lower_separation_of_overlapping_objects():
    """Two heavily overlapping people: their maps start alike on a random
    FCOS; optimising the Odam-Train loss pulls them apart."""
    from mmdet_odam.models.odam_train import odam_train_losses
    model = _build('fcos')
    odam = OdamTrainLoss(loss_weight=1.0)
    inputs, samples = _batch([CROWD[:2]])
    optim = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    seps = []
    for _ in range(8):
        losses = odam_train_losses(model, odam, inputs, samples, model.loss)
        seps.append(float(losses['loss_odam_sep']))
        optim.zero_grad()
        (losses['loss_odam_con'] + losses['loss_odam_sep']).backward()
        optim.step()
    assert seps[-1] < 0.7 * seps[0], seps


def test_dense_maps_of_positives_match_plain_autograd():
    """The batched patch maps used by Odam-Train equal grad x activation from
    a plain backward through the whole head (RetinaNet: no GroupNorm, so the
    receptive-field path is exact), resampled to the common grid."""
    from mmdet_odam.explainers.adapters.receptive_field import \
        record_norm_stats
    from mmdet_odam.models import CandidateMapper, resample_to_grid
    model = _build('retinanet').eval()
    feats = [f.detach().requires_grad_()
             for f in model.extract_feat(torch.randn(1, 3, 128, 160))]
    head = model.bbox_head
    with record_norm_stats(head) as stats:
        cls_scores = head(feats)[0]
    anchors = head.num_base_priors
    cand = InstanceData(cand_level=torch.tensor([0, 1]),
                        cand_index=torch.tensor([37 * anchors + 2,
                                                 11 * anchors]),
                        labels=torch.zeros(2, dtype=torch.long),
                        bboxes=torch.tensor([[0., 0., 40., 80.],
                                             [10., 10., 70., 120.]]))
    mapper = CandidateMapper(grid_short_edge=16, smooth='none')
    maps = mapper.dense(head, feats, stats, [cand], [(128, 160)])[0]
    for k in range(2):
        level = int(cand.cand_level[k])
        pos, anchor = divmod(int(cand.cand_index[k]), anchors)
        width = feats[level].shape[-1]
        logit = cls_scores[level][0, anchor, pos // width, pos % width]
        grad, = torch.autograd.grad(logit, feats[level], retain_graph=True)
        ref = (grad[0] * feats[level][0]).sum(0).clamp(min=0)
        stride = head.prior_generator.strides[level][0]
        region = torch.tensor([[0., 0., ref.shape[1] * stride,
                                ref.shape[0] * stride]])
        ref = resample_to_grid(ref[None], region, (128, 160),
                               maps.shape[-2:])[0]
        assert ref.abs().max() > 0
        torch.testing.assert_close(maps[k], ref, atol=1e-6, rtol=1e-4)


def test_hand_backward_of_the_class_tower_equals_the_patch_autograd(
        monkeypatch):
    """With GroupNorm (FCOS), the class-logit gradients run by hand from the
    recorded ReLU masks equal a patch forward + autograd backward with the
    same frozen statistics, first- and second-order."""
    from mmdet_odam.explainers.adapters import dense
    from mmdet_odam.explainers.adapters.receptive_field import \
        record_norm_stats
    from mmdet_odam.models import CandidateMapper
    model = _build('fcos').eval()
    feats = [f.detach().requires_grad_()
             for f in model.extract_feat(torch.randn(2, 3, 96, 128))]
    head = model.bbox_head
    assert dense.linear_class_tower(head) is not None
    with record_norm_stats(head) as stats:
        head(feats)
    # cells on every level, including map borders (zero padding)
    cand = [InstanceData(cand_level=torch.tensor([0, 0, 1, 2]),
                         cand_index=torch.tensor([0, 77, 40, 11]),
                         labels=torch.zeros(4, dtype=torch.long),
                         bboxes=torch.tensor([[0., 0., 20., 30.]] * 4))
            for _ in range(2)]
    mapper = CandidateMapper(grid_short_edge=24)

    def maps_and_grad():
        maps = mapper.dense(head, feats, stats, cand, [(96, 128)] * 2,
                            create_graph=True)
        loss = sum(m.pow(2).sum() for m in maps)
        grad, = torch.autograd.grad(loss, head.cls_convs[0].conv.weight)
        return maps, grad

    by_hand, grad_by_hand = maps_and_grad()
    monkeypatch.setattr(dense, 'linear_class_tower', lambda head: None)
    patch, grad_patch = maps_and_grad()
    assert all(m.abs().max() > 0 for m in patch)
    for a, b in zip(by_hand, patch):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(grad_by_hand, grad_patch, atol=1e-6, rtol=1e-4)


def test_hook_trains_with_both_losses_logged(synthetic_crowd_root, tmp_path):
    """The Odam-Train FCOS config through MMEngine's Runner (what
    tools/train.py runs), wrapped like a distributed model would be."""
    import mmdet_odam  # noqa: F401
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(
        str(REPO / 'configs/fcos/fcos_tiny_odam-train_synthetic-crowd.py'))
    root = f'{synthetic_crowd_root}/'
    cfg.train_dataloader.dataset.data_root = root
    cfg.train_dataloader.batch_size = 4
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=3)
    cfg.param_scheduler = []
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.custom_hooks[0].warmup_iters = 1
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = None
    cfg.log_processor = dict(by_epoch=False, window_size=1)
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    hook, = [h for h in runner.hooks if type(h).__name__ == 'OdamTrainHook']
    recorded = record_loss_inputs(hook.loss)
    seen = []
    orig = runner.model.train_step

    def spy(data, optim_wrapper):
        out = orig(data, optim_wrapper)
        seen.append({k: float(v) for k, v in out.items() if 'odam' in k})
        return out

    runner.model.train_step = spy
    runner.train()
    assert len(seen) == 3
    assert seen[0] == {'loss_odam_con': 0.0, 'loss_odam_sep': 0.0}  # warm-up
    assert len(recorded) == 2  # the loss runs after the warm-up only
    for logged, record in zip(seen[1:], recorded):
        assert_losses_equal_hand_sum(logged, record, hook.loss)
    log = (tmp_path / runner.timestamp / f'{runner.timestamp}.log').read_text()
    assert 'loss_odam_con' in log and 'loss_odam_sep' in log


def test_losses_are_float32_under_autocast():
    """With mixed precision (``--amp``) the pair losses are computed in
    float32 (bfloat16 autocast stands in for CUDA fp16 on CPU)."""
    from mmdet_odam.models import install_odam_train
    model = _build('fcos')
    install_odam_train(model, OdamTrainLoss())
    inputs, samples = _batch([CROWD])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model.loss(inputs, samples)
    for key in ('loss_odam_con', 'loss_odam_sep'):
        assert losses[key].dtype == torch.float32
        assert torch.isfinite(losses[key])


def test_hook_unwraps_a_distributed_model():
    """Under MMEngine's DDP wrapper (gloo, one process) the hook installs the
    losses on the wrapped detector and ``train_step`` logs them."""
    import socket
    import types

    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    from mmengine.optim import OptimWrapper

    from mmdet_odam.engine import OdamTrainHook
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=0, world_size=1)
    try:
        model = _build('fcos')
        ddp = MMDistributedDataParallel(module=model)
        hook = OdamTrainHook()
        recorded = record_loss_inputs(hook.loss)
        hook.before_train(types.SimpleNamespace(model=ddp, iter=0))
        inputs, samples = _batch([CROWD, CROWD[:2]])
        data = dict(inputs=list(inputs * 50 + 100), data_samples=samples)
        optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
        log_vars = ddp.train_step(data, optim)
    finally:
        dist.destroy_process_group()
    recorded, = recorded
    assert_losses_equal_hand_sum(log_vars, recorded, hook.loss)


def fcos_assignment_by_hand(points, ranges, gt_boxes):
    """FCOS's positives (Tian et al., 2019, Sec. 3.1-3.2; no centre
    sampling): a point inside a GT box whose largest distance to the box's
    sides lies in its level's regress range, assigned to the smallest such
    box (the first on equal areas).

    Returns:
        tuple[Tensor, Tensor]: Flat indices of the positive points and their
        GT indices.
    """
    x, y = points[:, 0:1].numpy(), points[:, 1:2].numpy()
    x1, y1, x2, y2 = (gt_boxes[:, k][None].numpy() for k in range(4))
    sides = np.stack([x - x1, y - y1, x2 - x, y2 - y])  # (4, N, G)
    reach = sides.max(0)
    lo, hi = ranges[:, 0:1].numpy(), ranges[:, 1:2].numpy()
    fits = (sides.min(0) > 0) & (reach >= lo) & (reach <= hi)
    areas = np.where(fits, (x2 - x1) * (y2 - y1), np.inf)
    flat = np.isfinite(areas.min(1)).nonzero()[0]
    return torch.from_numpy(flat), torch.from_numpy(areas[flat].argmin(1))


@pytest.mark.parametrize('name', ['fcos', 'retinanet'])
def test_recorded_assignment_equals_an_independent_one(name):
    """Positives come from what the head's own target assignment returned
    during its loss; they equal an assignment computed another way: FCOS's
    rule by hand, RetinaNet's MaxIoU assigner run on the GT directly."""
    from mmdet_odam.models.odam_train import odam_train_losses
    model = _build(name)
    odam = OdamTrainLoss(max_positives=0)  # no cap: every positive
    calls = []
    original = odam.dense_positives

    def spy(*args):
        calls.append((args, original(*args)))
        return calls[-1][1]

    odam.dense_positives = spy
    inputs, samples = _batch([CROWD, CROWD[:2]])
    odam_train_losses(model, odam, inputs, samples, model.loss)
    (args, positives), = calls
    assert args[-1] is not None and len(args[-1]) == 2  # recorded
    head = model.bbox_head
    priors = head.prior_generator.grid_priors([f.shape[-2:] for f in args[1]],
                                              device='cpu')
    starts = torch.tensor([0] + [len(p) for p in priors]).cumsum(0)
    for pos, sample in zip(positives, samples):
        gt = sample.gt_instances
        if name == 'fcos':
            ranges = torch.cat([torch.tensor(r).expand(len(p), 2) for p, r in
                                zip(priors, head.regress_ranges)])
            flat, gt_index = fcos_assignment_by_hand(torch.cat(priors),
                                                     ranges, gt.bboxes)
        else:
            assigned = head.assigner.assign(
                InstanceData(priors=torch.cat(priors)), gt)
            flat = (assigned.gt_inds > 0).nonzero()[:, 0]
            gt_index = assigned.gt_inds[flat] - 1
        assert len(flat) > 0 and set(gt_index.tolist()) == set(
            range(len(gt)))
        got = starts[pos.cand_level] + pos.cand_index
        order = got.argsort()
        assert torch.equal(got[order], flat)
        assert torch.equal(pos.gt_index[order], gt_index)
