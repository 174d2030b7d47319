# Tiny FCOS (~1M parameters) for 256x256 synthetic crowd images, trained from
# scratch on CPU: MMDetection's FCOS (R50-caffe, FPN, GN head) shrunk to a
# ResNet-18 layout with 16 base channels (stages 16/32/64/128), a 64-channel
# FPN with 3 levels (strides 8/16/32, no extra convs) and 2 stacked convs
# (GN, 16 groups) in the head. One class ('person').
_base_ = './fcos_r50-caffe_fpn_gn-head.py'

model = dict(
    # trained from scratch: plain RGB normalisation
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        base_channels=16,
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
        in_channels=[32, 64, 128],
        out_channels=64,
        start_level=0,
        add_extra_convs=False,
        num_outs=3),
    bbox_head=dict(
        num_classes=1,
        in_channels=64,
        feat_channels=64,
        stacked_convs=2,
        strides=[8, 16, 32],
        # max regression distance per level; synthetic people are 27-133 px
        # tall (max distance ~h/2 at the centre, ~h at the border)
        regress_ranges=((-1, 32), (32, 64), (64, 1e8)),
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True)),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100))
