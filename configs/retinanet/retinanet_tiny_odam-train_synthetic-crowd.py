# Tiny RetinaNet on the synthetic crowd data with Odam-Train (Sec. 3.2): explanation consistency and separation
# losses added by the Odam-Train loss hook; everything else as the base config.
#   python tools/train.py configs/retinanet/retinanet_tiny_odam-train_synthetic-crowd.py
_base_ = './retinanet_tiny_synthetic-crowd.py'

custom_hooks = [
    dict(
        type='OdamTrainHook',
        loss_weight=0.5,
        grid_short_edge=32,
        max_positives=64,
        negatives='overlap',
        warmup_iters=100)
]
