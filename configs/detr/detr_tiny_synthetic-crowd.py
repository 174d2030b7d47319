# Tiny DETR trained from scratch on the synthetic crowd dataset
# (256x256 images, 1 class 'person'), for CPU demos and tests.
#   python tools/generate_synthetic_crowd.py --out-dir data/synthetic_crowd
#   python tools/train.py configs/detr/detr_tiny_synthetic-crowd.py
# MMDetection's DETR shrunk: ResNet-18 layout with 16 base channels, last stage
# only (128 channels, stride 32), 64-d transformer with 2 encoder and 2 decoder
# layers, 30 queries. DETR learns slowly from scratch: expect low AP after a
# short CPU schedule; it is meant for explanation demos and tests.
_base_ = [
    '../_base_/models/detr_r50.py',
    '../_base_/datasets/synthetic_crowd_coco.py',
    '../_base_/schedules/tiny_cpu.py',
]
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code

max_epochs = 32
embed_dims = 64

model = dict(
    num_queries=30,
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        base_channels=16,
        num_stages=4,
        out_indices=(3, ),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(in_channels=[128], out_channels=embed_dims),
    encoder=dict(
        num_layers=2,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=4),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=256))),
    decoder=dict(
        num_layers=2,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=4),
            cross_attn_cfg=dict(embed_dims=embed_dims, num_heads=4),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=256))),
    positional_encoding=dict(num_feats=embed_dims // 2, normalize=True),
    bbox_head=dict(num_classes=1, embed_dims=embed_dims),
    test_cfg=dict(max_per_img=30))  # DETRHead takes top-k of the queries

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
# from scratch: no reduced backbone learning rate
optim_wrapper = dict(
    optimizer=dict(
        _delete_=True, type='AdamW', lr=0.0002, weight_decay=0.0001),
    clip_grad=dict(max_norm=0.1, norm_type=2))
