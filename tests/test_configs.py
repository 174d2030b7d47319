"""Configs and train/test CLIs.

(a) every config under ``configs/`` (not ``_base_``) loads, builds without
    pretrained weights and runs ``predict`` / ``tensor`` forwards;
(b) a few optimiser steps of each tiny detector on a fixed batch of the
    synthetic crowd fixture (``tests/conftest.py``) lower its loss;
(c) ``tools/train.py`` end to end on a tiny dataset writes a checkpoint that a
    second run loads with ``load_from`` (torch >= 2.6 ``weights_only``) and
    ``tools/test.py`` evaluates (COCO and CrowdHuman metrics).
"""
import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / 'configs'
CONFIGS = sorted(
    p.relative_to(REPO).as_posix() for p in CONFIG_DIR.rglob('*.py')
    if '_base_' not in p.relative_to(CONFIG_DIR).parts)
TINY_CONFIGS = [c for c in CONFIGS if '_tiny_' in c or '_tiny-' in c]
# one config per tiny architecture (the CrowdHuman-format FCOS variant has the
# same model)
TINY_ARCH_CONFIGS = [c for c in TINY_CONFIGS if 'crowdhuman' not in c]


def _load_cfg(config):
    from mmengine.config import Config
    return Config.fromfile(str(REPO / config))


def _build_model(cfg):
    import mmdet_odam  # noqa: F401
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None  # no pretrained weights offline
    model_cfg.pop('pretrained', None)
    model = MODELS.build(model_cfg)
    model.init_weights()  # as the Runner does (e.g. focal-loss prior bias)
    return model


def _sample(h, w):
    from mmdet.structures import DetDataSample
    return DetDataSample(
        metainfo=dict(
            img_id=0,
            img_shape=(h, w),
            ori_shape=(h, w),
            pad_shape=(h, w),
            batch_input_shape=(h, w),
            scale_factor=(1.0, 1.0)))


def test_config_list_complete():
    names = {Path(c).name for c in CONFIGS}
    expected = [
        'fcos_tiny_synthetic-crowd.py', 'fcos_tiny_synthetic-crowdhuman.py',
        'retinanet_tiny_synthetic-crowd.py',
        'faster-rcnn_tiny_synthetic-crowd.py', 'detr_tiny_synthetic-crowd.py',
        'fcos_r50_fpn_gn-head_1x_coco.py', 'retinanet_r50_fpn_1x_coco.py',
        'faster-rcnn_r50_fpn_1x_coco.py', 'detr_r50_8xb2-150e_coco.py',
        'fcos_r50_fpn_gn-head_30e_crowdhuman.py',
        'retinanet_r50_fpn_30e_crowdhuman.py',
        'faster-rcnn_r50_fpn_30e_crowdhuman.py', 'detr_r50_crowdhuman.py'
    ]
    assert set(expected) <= names


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds_and_predicts(config):
    cfg = _load_cfg(config)
    assert cfg.custom_imports['imports'] == ['mmdet_odam']
    assert cfg.default_scope == 'mmdet'
    dataset = cfg.train_dataloader.dataset
    if 'crowdhuman' in config:
        assert dataset.type == 'CrowdHumanDataset'
        # AP/MR/JI of MMDetection's metric plus the crowd/sparse recalls
        assert cfg.val_evaluator.type == 'CrowdHumanRecallMetric'
        assert cfg.val_dataloader.sampler.shuffle is False
    else:
        assert cfg.val_evaluator.type == 'CocoMetric'
    num_classes = 80 if 'coco' in Path(config).name else 1
    head = cfg.model.get('roi_head', cfg.model).get('bbox_head')
    for stage_head in head if isinstance(head, list) else [head]:  # cascade
        assert stage_head.num_classes == num_classes
    if 'crowdhuman' in config and '_tiny_' not in config:
        assert cfg.train_cfg.max_epochs == 30
    if '_tiny_' in config:
        assert cfg.model.backbone.init_cfg is None
        assert cfg.train_dataloader.batch_size == 8
        assert cfg.env_cfg.cudnn_benchmark is False
        assert cfg.auto_scale_lr.enable is False
        assert cfg.default_hooks.checkpoint.max_keep_ckpts == 1
    if 'faster-rcnn' in config and not config.endswith('_coco.py'):
        # H:W = {1, 2, 3}; MMDetection's anchor ratio is h / w
        assert list(cfg.model.rpn_head.anchor_generator.ratios) == [1., 2., 3.]

    torch.manual_seed(0)
    model = _build_model(cfg).eval()
    size = 128 if '_tiny_' in config else 224
    data = dict(
        inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8)],
        data_samples=[_sample(size, size)])
    with torch.no_grad():
        data = model.data_preprocessor(data, False)
        results = model(**data, mode='predict')
        assert len(results) == 1
        pred = results[0].pred_instances
        assert pred.bboxes.shape[-1] == 4
        assert len(pred.scores) == len(pred.labels) == len(pred.bboxes)
        if len(pred.labels):
            assert int(pred.labels.max()) < num_classes
        if '_tiny_' in config:
            outs = model(**data, mode='tensor')
            assert len(outs) > 0


# ----------------------------------------------------------------------------
# (b) a few training steps on a fixed batch lower the loss
# ----------------------------------------------------------------------------
def _fixed_batch(cfg, root, batch_size):
    """The first ``batch_size`` training images of the synthetic crowd
    fixture, without random flip and at the fixture's own (small) size."""
    from mmengine.dataset import pseudo_collate

    from mmdet.registry import DATASETS
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.data_root = str(root)
    if 'extra_ann_file' in ds_cfg:
        ds_cfg.extra_ann_file = f'{root}/annotations/id_hw_train.json'
    ds_cfg.pipeline = [
        t for t in ds_cfg.pipeline if t.type not in ('RandomFlip', 'Resize')
    ]
    dataset = DATASETS.build(ds_cfg)
    return pseudo_collate([dataset[i] for i in range(batch_size)])


# detector-specific knobs to get a clear decrease within a few steps
TRAIN_STEPS = {
    'fcos': dict(iters=6, batch=2),
    # from the focal-loss prior the first steps are slow at the config's lr
    'retinanet': dict(iters=10, batch=2, lr=0.05),
    'faster-rcnn': dict(iters=8, batch=2, lr=0.05),
    'atss': dict(iters=8, batch=2, lr=0.01),
    # DETR learns slowly: larger lr, no dropout, no grad clipping, more steps
    'detr': dict(iters=10, batch=2, lr=1e-3),
}


@pytest.mark.parametrize('config', TINY_ARCH_CONFIGS)
def test_tiny_detector_loss_decreases(config, synthetic_crowd_root):
    from mmengine.optim import build_optim_wrapper

    cfg = _load_cfg(config)
    arch = Path(config).name.split('_')[0]
    knobs = TRAIN_STEPS[arch]
    if arch == 'detr':
        for part in ('encoder', 'decoder'):
            layer = cfg.model[part].layer_cfg
            for key in ('self_attn_cfg', 'cross_attn_cfg'):
                if key in layer:
                    layer[key].dropout = 0.0
            layer.ffn_cfg.ffn_drop = 0.0
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    if 'lr' in knobs:
        optim_cfg.optimizer.lr = knobs['lr']
        if arch == 'detr':
            optim_cfg.pop('clip_grad', None)

    torch.manual_seed(0)
    model = _build_model(cfg)
    model.train()
    optim_wrapper = build_optim_wrapper(model, optim_cfg)
    batch = _fixed_batch(cfg, synthetic_crowd_root, knobs['batch'])
    losses = []
    for _ in range(knobs['iters']):
        log_vars = model.train_step(batch, optim_wrapper)
        losses.append(float(log_vars['loss'].detach()))
    assert all(torch.isfinite(torch.tensor(losses))), losses
    first = sum(losses[:2]) / 2
    last = sum(losses[-2:]) / 2
    assert last < 0.9 * first, losses


# ----------------------------------------------------------------------------
# (c) CLIs end to end
# ----------------------------------------------------------------------------
def _run(args, timeout=300):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    return subprocess.run([sys.executable] + args, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _data_options(root, coco=True):
    root = f'{root}/'
    opts = []
    for split in ('train', 'val', 'test'):
        opts += [
            f'{split}_dataloader.dataset.data_root={root}',
            f'{split}_dataloader.num_workers=0',
            f'{split}_dataloader.persistent_workers=False',
        ]
    if coco:
        ann = f'{root}annotations/instances_val.json'
    else:
        ann = f'{root}annotations/annotation_val.odgt'
        opts += [
            'train_dataloader.dataset.extra_ann_file='
            f'{root}annotations/id_hw_train.json',
            'val_dataloader.dataset.extra_ann_file='
            f'{root}annotations/id_hw_val.json',
            'test_dataloader.dataset.extra_ann_file='
            f'{root}annotations/id_hw_val.json',
        ]
    opts += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']
    return opts


def test_cli_missing_files_one_line_error(tmp_path):
    res = _run(['tools/train.py', str(tmp_path / 'nope.py')], timeout=120)
    assert res.returncode != 0
    assert res.stderr.strip().count('\n') == 0, res.stderr
    assert 'not found' in res.stderr and 'Traceback' not in res.stderr
    res = _run([
        'tools/test.py', 'configs/fcos/fcos_tiny_synthetic-crowd.py',
        str(tmp_path / 'nope.pth')
    ], timeout=120)
    assert res.returncode != 0
    assert res.stderr.strip().count('\n') == 0, res.stderr
    assert 'not found' in res.stderr and 'Traceback' not in res.stderr


def test_train_cli_checkpoint_roundtrip(synthetic_crowd_root, tmp_path):
    """Runner-written checkpoints, with resume state (optimizer, schedulers,
    message hub) and without, resume / load through the safe loader."""
    config = 'configs/fcos/fcos_tiny_synthetic-crowd.py'
    common = _data_options(synthetic_crowd_root) + [
        'train_cfg.val_interval=1',
        'train_dataloader.batch_size=4', 'val_dataloader.batch_size=4',
        'test_dataloader.batch_size=4', 'default_hooks.logger.interval=1',
        # an almost untrained model: keep all boxes so the metric has input
        'model.test_cfg.score_thr=0.0'
    ]
    wd1 = tmp_path / 'run1'
    res = _run(['tools/train.py', config, '--work-dir',
                str(wd1), '--cfg-options'] + common + ['train_cfg.max_epochs=1'])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ckpt = wd1 / 'epoch_1.pth'
    assert ckpt.is_file()
    assert 'coco/bbox_mAP' in res.stdout + res.stderr

    # torch's own weights_only refuses the message hub; ours loads exactly
    # what full unpickling gives
    from mmdet_odam.utils import load_checkpoint_file
    with pytest.raises(Exception, match='HistoryBuffer'):
        torch.load(ckpt, weights_only=True)
    safe = load_checkpoint_file(ckpt)
    full = load_checkpoint_file(ckpt, trusted=True)
    assert safe.keys() == full.keys() >= {'optimizer', 'message_hub'}
    for key, value in full['state_dict'].items():
        assert torch.equal(safe['state_dict'][key], value)
    for name, buffer in full['message_hub']['log_scalars'].items():
        other = safe['message_hub']['log_scalars'][name]
        assert np.array_equal(other.data[0], buffer.data[0])
        assert other.mean() == buffer.mean()

    # resume (optimizer, schedulers, message hub) for a second epoch, saved
    # without resume state
    res = _run(['tools/train.py', config, '--work-dir', str(wd1), '--resume',
                str(ckpt), '--cfg-options'] + common + [
                    'train_cfg.max_epochs=2',
                    'default_hooks.checkpoint.save_optimizer=False',
                    'default_hooks.checkpoint.save_param_scheduler=False'])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert 'resumed epoch: 1' in res.stdout + res.stderr
    plain = wd1 / 'epoch_2.pth'
    assert 'optimizer' not in load_checkpoint_file(plain)

    out = tmp_path / 'preds.pkl'
    res = _run([
        'tools/test.py', config,
        str(plain), '--work-dir',
        str(tmp_path / 'test'), '--out',
        str(out), '--cfg-options'
    ] + common)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert out.is_file()
    assert 'coco/bbox_mAP' in res.stdout + res.stderr


@pytest.mark.parametrize('tool', ['tools/test.py', 'tools/eval_explanations.py'])
def test_tools_refuse_mismatched_and_unsafe_checkpoints(
        tool, synthetic_crowd_root, tmp_path, malicious_checkpoint):
    """A checkpoint of another architecture is one ``error:`` line and a
    non-zero exit, not warnings and a half-random model; a checkpoint whose
    pickle would run code is refused without running it."""
    evil, marker = malicious_checkpoint
    cases = (('configs/retinanet/retinanet_tiny_synthetic-crowd.py',
              'checkpoints/fcos_tiny_synthetic-crowd.pth', 'does not match'),
             ('configs/fcos/fcos_tiny_synthetic-crowd.py', str(evil),
              'builtins.exec'))
    for config, checkpoint, expected in cases:
        extra = ['--methods', 'odam', '--num-images', '1',
                 '--deletion-steps', '0', '--work-dir',
                 str(tmp_path / 'eval')] if 'eval' in tool else \
            ['--work-dir', str(tmp_path / 'test')]
        res = _run([tool, config, checkpoint] + extra + ['--cfg-options'] +
                   _data_options(synthetic_crowd_root))
        assert res.returncode != 0
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith('error:') and expected in last, \
            res.stderr[-2000:]
        assert 'Traceback' not in res.stderr
    assert not marker.exists()


@pytest.mark.parametrize('config', [
    'configs/fcos/fcos_tiny_synthetic-crowdhuman.py',
    'configs/fcos/fcos_tiny_odam-nms_synthetic-crowdhuman.py'
])
def test_test_cli_crowdhuman_metric(config, synthetic_crowd_root, tmp_path):
    """The CrowdHuman-format configs (NMS and Odam-NMS) evaluate the bundled
    tiny FCOS through tools/test.py: AP/MR/JI and the crowd/sparse recall."""
    res = _run([
        'tools/test.py', config, 'checkpoints/fcos_tiny_synthetic-crowd.pth',
        '--work-dir', str(tmp_path / 'test'), '--data-root',
        str(synthetic_crowd_root), '--cfg-options'
    ] + [f'{split}_dataloader.num_workers=0' for split in ('val', 'test')] + [
        f'{split}_dataloader.persistent_workers=False'
        for split in ('val', 'test')
    ] + ['test_evaluator.num_ji_process=1'])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout + res.stderr
    for key in ('crowd_human/mAP', 'crowd_human/mMR', 'crowd_human/JI',
                'crowd_human/recall_crowd', 'crowd_human/recall_sparse',
                'crowd_human/best_ji_score_thr'):
        assert key in out, key
