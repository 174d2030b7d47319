# Tiny FCOS with a stride-4 level (P2): all four ResNet stages feed a 4-level
# FPN (strides 4/8/16/32), so the smallest synthetic people (27-64 px tall,
# 8-20 px wide) are detected, and explained, on 4 px cells instead of 8 px
# ones; everything else as fcos_tiny_synthetic-crowd.py. An experiment on map
# resolution (README, "Explanation quality"): its ODAM maps point worse.
#   python tools/train.py configs/fcos/fcos_tiny-p2_synthetic-crowd.py
_base_ = './fcos_tiny_synthetic-crowd.py'

model = dict(
    backbone=dict(out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[16, 32, 64, 128], num_outs=4),
    bbox_head=dict(
        strides=[4, 8, 16, 32],
        # max regression distance per level, halved with the strides
        regress_ranges=((-1, 16), (16, 32), (32, 64), (64, 1e8))))
