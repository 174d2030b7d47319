# FCOS R50-caffe FPN GN-head on CrowdHuman (full-body boxes), 30 epochs as in
# the ODAM paper; other hyper-parameters as MMDetection's COCO 1x baseline
# (batch 16 = 8 GPUs x 2 images, SGD lr 0.01). Evaluated with CrowdHumanMetric
# (AP50, MR^-2, JI).
_base_ = [
    '../_base_/models/fcos_r50-caffe_fpn_gn-head.py',
    '../_base_/datasets/crowdhuman.py',
    '../_base_/schedules/crowdhuman_30e.py',
]
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code

max_epochs = 30
model = dict(
    bbox_head=dict(num_classes=1),
    # crowded scenes: keep more, lower-score detections for AP / MR / JI
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=500))

# MMDetection's FCOS recipe: constant warm-up, bias lr x2, gradient clipping
param_scheduler = [
    dict(type='ConstantLR', factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[24, 27],
        gamma=0.1)
]
optim_wrapper = dict(
    paramwise_cfg=dict(bias_lr_mult=2., bias_decay_mult=0.),
    clip_grad=dict(max_norm=35, norm_type=2))
