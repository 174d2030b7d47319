# TensorFlow's Object Detection API model zoo ssd_mobilenet_v2_coco_2018_03_29
# (COCO-trained, Apache-2.0) as an MMDetection model: MobileNetV2 + SSDNeck with
# depthwise extra layers + SSDHead, TF "SAME" convs (MMCV's
# Conv2dAdaptivePadding), TF's anchors and sigmoid scores (mmdet_odam/models/
# tf_ssd.py). Inference only. Weights: converted from the frozen TF graph by
#   make real-model   # -> data/real_model/ssd_mobilenetv2_tf-coco.pth
#   python tools/explain.py configs/ssd/ssd_mobilenetv2_tf-coco.py \
#       data/real_model/ssd_mobilenetv2_tf-coco.pth data/real_model/images \
#       --out-dir outputs/real_ssd
# Post-processing mirrors the graph's DetectionOutput (OpenCV's reference run):
# per-class NMS at IoU 0.6, score >= 0.01, 100 detections.
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code

input_size = 300
tf_conv = dict(type='Conv2dAdaptivePadding')  # TF 'SAME' (pads right/bottom)
tf_norm = dict(type='BN', eps=0.001)
model = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[127.5, 127.5, 127.5],  # TF: x * 2 / 255 - 1
        std=[127.5, 127.5, 127.5],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='TFMobileNetV2',
        out_indices=(7, ),
        expand_out_indices=(5, ),  # expanded_conv_13/expand (576 ch)
        conv_cfg=tf_conv,
        norm_cfg=tf_norm,
        act_cfg=dict(type='ReLU6')),
    neck=dict(
        type='SSDNeck',
        in_channels=(576, 1280),
        out_channels=(576, 1280, 512, 256, 256, 128),
        level_strides=(2, 2, 2, 2),
        level_paddings=(1, 1, 1, 1),  # unused by the TF 'SAME' convs
        l2_norm_scale=None,
        use_depthwise=True,
        conv_cfg=tf_conv,
        norm_cfg=tf_norm,
        act_cfg=dict(type='ReLU6'),
        init_cfg=None),
    bbox_head=dict(
        type='TFSSDHead',
        num_classes=80,
        in_channels=(576, 1280, 512, 256, 256, 128),
        anchor_generator=dict(
            type='TFSSDAnchorGenerator',
            input_size=input_size,
            featmap_sizes=(19, 10, 5, 3, 2, 1),
            min_scale=0.2,
            max_scale=0.95,
            aspect_ratios=(1.0, 2.0, 0.5, 3.0, 0.333),
            interpolated_scale_aspect_ratio=1.0,
            reduce_boxes_in_lowest_layer=True),
        bbox_coder=dict(  # TF's box coder scales (10, 10, 5, 5)
            type='DeltaXYWHBBoxCoder',
            target_means=[0., 0., 0., 0.],
            target_stds=[0.1, 0.1, 0.2, 0.2],
            clip_border=True),
        init_cfg=None),
    train_cfg=None,
    test_cfg=dict(
        nms_pre=1000,
        nms=dict(type='nms', iou_threshold=0.6),
        min_bbox_size=0,
        score_thr=0.01,
        max_per_img=100))

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
