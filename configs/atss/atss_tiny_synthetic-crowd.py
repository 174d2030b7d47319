# Tiny ATSS (~0.3M parameters) trained from scratch on the synthetic crowd
# dataset (256x256 images, 1 class 'person'), for CPU demos and tests.
#   python tools/generate_synthetic_crowd.py --out-dir data/synthetic_crowd
#   python tools/train.py configs/atss/atss_tiny_synthetic-crowd.py
# MMDetection's ATSS (R50 FPN) shrunk further than the shared tiny trunk so
# that the shipped checkpoint stays under 2 MB: ResNet-18 layout with 8 base
# channels (stages 8/16/32/64), a 32-channel FPN with 3 levels (strides
# 8/16/32), 2 stacked conv-GN(8 groups)-ReLU layers in the head, one square
# anchor per cell (32/64/128 px).
_base_ = [
    '../_base_/models/atss_r50_fpn.py',
    '../_base_/models/tiny_trunk.py',
    '../_base_/datasets/synthetic_crowd_coco.py',
    '../_base_/schedules/tiny_cpu.py',
]
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code

max_epochs = 6

model = dict(
    data_preprocessor={{_base_.tiny_data_preprocessor}},
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        base_channels=8,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(
        _delete_=True,
        type='FPN',
        in_channels=[16, 32, 64],
        out_channels=32,
        start_level=0,
        add_extra_convs=False,
        num_outs=3),
    bbox_head=dict(
        num_classes=1,
        in_channels=32,
        feat_channels=32,
        stacked_convs=2,
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
        anchor_generator=dict(octave_base_scale=4, strides=[8, 16, 32])),
    # the other tiny detectors' NMS (ATSS's own default is 0.6)
    test_cfg=dict(nms=dict(iou_threshold=0.5)))

# schedule and runtime: ../_base_/schedules/tiny_cpu.py, with this length
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
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
