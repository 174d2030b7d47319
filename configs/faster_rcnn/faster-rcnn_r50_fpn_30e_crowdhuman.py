# Faster R-CNN R50 FPN on CrowdHuman (full-body boxes) as in the ODAM paper:
# anchors H:W = {1, 2, 3}, 30 epochs, other hyper-parameters as MMDetection's
# COCO 1x baseline (batch 16 = 8 GPUs x 2 images, SGD lr 0.02). Evaluated with
# CrowdHumanMetric (AP50, MR^-2, JI).
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../_base_/datasets/crowdhuman.py',
    '../_base_/schedules/crowdhuman_30e.py',
]
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code

model = dict(
    rpn_head=dict(
        anchor_generator=dict(
            type='AnchorGenerator',
            scales=[8],
            ratios=[1.0, 2.0, 3.0],  # MMDetection's ratio is h / w
            strides=[4, 8, 16, 32, 64])),
    roi_head=dict(bbox_head=dict(num_classes=1)),
    # crowded scenes: keep more, lower-score detections for AP / MR / JI
    test_cfg=dict(
        rcnn=dict(
            score_thr=0.01,
            nms=dict(type='nms', iou_threshold=0.5),
            max_per_img=300)))

optim_wrapper = dict(optimizer=dict(lr=0.02))  # MMDetection's R-CNN lr
