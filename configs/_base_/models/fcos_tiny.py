# Tiny FCOS (~1M parameters) for 256x256 synthetic crowd images, trained from
# scratch on CPU: MMDetection's FCOS (R50-caffe, FPN, GN head) shrunk to a
# ResNet-18 layout with 16 base channels (stages 16/32/64/128), a 64-channel
# FPN with 3 levels (strides 8/16/32, no extra convs) and 2 stacked convs
# (GN, 16 groups) in the head. One class ('person'). Trunk: tiny_trunk.py.
_base_ = ['./fcos_r50-caffe_fpn_gn-head.py', './tiny_trunk.py']

model = dict(
    data_preprocessor={{_base_.tiny_data_preprocessor}},
    backbone={{_base_.tiny_backbone}},
    neck={{_base_.tiny_neck}},
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
