# DETR R50 on CrowdHuman (full-body boxes). The ODAM paper explains DETR on
# COCO only; this config follows its CrowdHuman recipe (30 epochs) with DETR's
# optimiser (AdamW 1e-4, backbone x0.1, grad clip 0.1, batch 16 = 8 GPUs x 2).
# 300 queries because CrowdHuman images hold up to hundreds of people. DETR
# converges slowly: 30 epochs give a weak detector; raise `max_epochs` (and the
# milestone) for a strong one. Evaluated with CrowdHumanMetric.
_base_ = [
    '../_base_/models/detr_r50.py',
    '../_base_/datasets/crowdhuman.py',
    '../_base_/schedules/crowdhuman_30e.py',
]
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code

max_epochs = 30
model = dict(
    num_queries=300,
    bbox_head=dict(num_classes=1),
    test_cfg=dict(max_per_img=300))

param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[20],
        gamma=0.1)
]
optim_wrapper = dict(
    optimizer=dict(
        _delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={'backbone': dict(lr_mult=0.1, decay_mult=1.0)}))
