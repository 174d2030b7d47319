# Tiny RetinaNet trained from scratch on the synthetic crowd dataset
# (256x256 images, 1 class 'person'), for CPU demos and tests.
#   python tools/generate_synthetic_crowd.py --out-dir data/synthetic_crowd
#   python tools/train.py configs/retinanet/retinanet_tiny_synthetic-crowd.py
# MMDetection's RetinaNet model shrunk: ResNet-18 layout with 16 base channels
# (stages 16/32/64/128), 64-channel FPN with 3 levels (strides 8/16/32),
# 2 stacked convs in the head; anchors for standing people.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../_base_/models/tiny_trunk.py',
    '../_base_/datasets/synthetic_crowd_coco.py',
    '../_base_/schedules/tiny_cpu.py',
]
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code

max_epochs = 18

model = dict(
    data_preprocessor={{_base_.tiny_data_preprocessor}},
    backbone={{_base_.tiny_backbone}},
    neck={{_base_.tiny_neck}},
    bbox_head=dict(
        num_classes=1,
        in_channels=64,
        feat_channels=64,
        stacked_convs=2,
        anchor_generator=dict(
            type='AnchorGenerator',
            # sqrt(area) 24-38 / 48-76 / 96-152 px at strides 8 / 16 / 32
            # (people are 27-133 px tall, 2-3x taller than wide)
            octave_base_scale=3,
            scales_per_octave=3,
            # MMDetection's ratio is h / w: upright people are 1-3x taller
            ratios=[1.0, 2.0, 3.0],
            strides=[8, 16, 32])),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100))

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
