# The ODAM paper's CrowdHuman schedule: MMDetection's 1x schedule (batch 16 =
# 8 GPUs x 2 images, linear warm-up, SGD) stretched to 30 epochs with steps at
# epochs 24 and 27, validated every 5 epochs; SGD lr 0.01 (the RetinaNet and
# FCOS COCO baselines; children change what differs).
_base_ = [
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

max_epochs = 30
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[24, 27],
        gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(lr=0.01))
