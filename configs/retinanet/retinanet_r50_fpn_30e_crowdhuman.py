# RetinaNet R50 FPN on CrowdHuman (full-body boxes), 30 epochs as the ODAM
# paper's CrowdHuman detectors; anchors H:W = {1, 2, 3} for people (the paper
# sets them for Faster R-CNN); other hyper-parameters as MMDetection's COCO 1x
# baseline (batch 16 = 8 GPUs x 2 images, SGD lr 0.01). Evaluated with
# CrowdHumanMetric (AP50, MR^-2, JI).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/crowdhuman.py',
    '../_base_/schedules/crowdhuman_30e.py',
]
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code

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
