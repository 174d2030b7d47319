# Tiny FCOS (~1M parameters) trained from scratch on the synthetic crowd
# dataset (256x256 images, 1 class 'person'), for CPU demos and tests.
#   python tools/generate_synthetic_crowd.py --out-dir data/synthetic_crowd
#   python tools/train.py configs/fcos/fcos_tiny_synthetic-crowd.py
# Model: see configs/_base_/models/fcos_tiny.py (MMDetection's FCOS shrunk).
_base_ = [
    '../_base_/models/fcos_tiny.py',
    '../_base_/datasets/synthetic_crowd_coco.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)

max_epochs = 20

# schedule: 800 training images / batch 8 = 100 iterations per epoch
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[int(max_epochs * 0.75)],
        gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
    paramwise_cfg=dict(bias_lr_mult=2., bias_decay_mult=0.),
    clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=8)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=1, save_last=True))
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=True)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
randomness = dict(seed=0)
