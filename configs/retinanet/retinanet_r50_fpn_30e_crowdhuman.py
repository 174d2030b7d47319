# RetinaNet R50 FPN on CrowdHuman (full-body boxes), 30 epochs as the ODAM
# paper's CrowdHuman detectors; anchors H:W = {1, 2, 3} for people (the paper
# sets them for Faster R-CNN); other hyper-parameters as MMDetection's COCO 1x
# baseline (batch 16 = 8 GPUs x 2 images, SGD lr 0.01). Evaluated with
# CrowdHumanMetric (AP50, MR^-2, JI).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/crowdhuman.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)

max_epochs = 30
model = dict(
    bbox_head=dict(
        num_classes=1,
        anchor_generator=dict(
            type='AnchorGenerator',
            octave_base_scale=4,
            scales_per_octave=3,
            ratios=[1.0, 2.0, 3.0],  # MMDetection's ratio is h / w
            strides=[8, 16, 32, 64, 128])),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=500))

train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[24, 27],
        gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
# base_batch_size = 8 GPUs x 2 images
auto_scale_lr = dict(enable=False, base_batch_size=16)
