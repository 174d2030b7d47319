# Tiny Faster R-CNN trained from scratch on the synthetic crowd dataset
# (256x256 images, 1 class 'person'), for CPU demos and tests.
#   python tools/generate_synthetic_crowd.py --out-dir data/synthetic_crowd
#   python tools/train.py \
#       configs/faster_rcnn/faster-rcnn_tiny_synthetic-crowd.py
# MMDetection's Faster R-CNN (R50-FPN) shrunk: ResNet-18 layout with 16 base
# channels (stages 16/32/64/128), 64-channel FPN with 3 levels (strides
# 8/16/32), RPN anchors with H:W = {1, 2, 3} (as the ODAM paper on CrowdHuman),
# a 256-d two-fc box head, fewer proposals (300) and sampled RoIs (64 per
# image; mmcv's CPU RoIAlign backward dominates the step time otherwise).
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../_base_/models/tiny_trunk.py',
    '../_base_/datasets/synthetic_crowd_coco.py',
    '../_base_/schedules/tiny_cpu.py',
]
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code

max_epochs = 13

model = dict(
    data_preprocessor={{_base_.tiny_data_preprocessor}},
    backbone={{_base_.tiny_backbone}},
    neck={{_base_.tiny_neck}},
    rpn_head=dict(
        in_channels=64,
        feat_channels=64,
        anchor_generator=dict(
            type='AnchorGenerator',
            # sqrt(area) 24 / 48 / 96 px at strides 8 / 16 / 32 (people are
            # 27-133 px tall, 2-3x taller than wide)
            scales=[3],
            # MMDetection's ratio is h / w: H:W = {1, 2, 3}
            ratios=[1.0, 2.0, 3.0],
            strides=[8, 16, 32])),
    roi_head=dict(
        bbox_roi_extractor=dict(
            # fixed 2x2 samples per bin: cheaper than adaptive on CPU
            roi_layer=dict(
                type='RoIAlign', output_size=7, sampling_ratio=2),
            out_channels=64,
            featmap_strides=[8, 16, 32],
            # RoIs with sqrt(area) < 64 / < 128 / >= 128 px use strides 8/16/32
            finest_scale=32),
        bbox_head=dict(
            in_channels=64,
            fc_out_channels=256,
            num_classes=1)),
    train_cfg=dict(
        rpn_proposal=dict(
            nms_pre=500,
            max_per_img=300,
            nms=dict(type='nms', iou_threshold=0.7),
            min_bbox_size=0),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(
            nms_pre=1000,
            max_per_img=300,
            nms=dict(type='nms', iou_threshold=0.7),
            min_bbox_size=0),
        rcnn=dict(
            score_thr=0.05,
            nms=dict(type='nms', iou_threshold=0.5),
            max_per_img=100)))

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
optim_wrapper = dict(optimizer=dict(lr=0.02))
