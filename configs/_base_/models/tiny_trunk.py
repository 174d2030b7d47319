# The trunk shared by the tiny synthetic-crowd detectors (FCOS, RetinaNet,
# Faster R-CNN), trained from scratch on CPU: plain RGB normalisation, a
# ResNet-18 layout with 16 base channels (stages 16/32/64/128) and a 64-channel
# FPN with 3 levels (strides 8/16/32, no extra convs). Children use them as
# `model = dict(data_preprocessor={{_base_.tiny_data_preprocessor}}, ...)`.
tiny_data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_size_divisor=32)
tiny_backbone = dict(
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
    init_cfg=None)
tiny_neck = dict(
    _delete_=True,
    type='FPN',
    in_channels=[32, 64, 128],
    out_channels=64,
    start_level=0,
    add_extra_convs=False,
    num_outs=3)
