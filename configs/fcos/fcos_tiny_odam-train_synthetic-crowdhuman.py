# Tiny FCOS on the synthetic crowd data (CrowdHuman format) with Odam-Train (Sec. 3.2): explanation consistency and separation
# losses added by the Odam-Train loss hook; everything else as the base config.
#   python tools/train.py configs/fcos/fcos_tiny_odam-train_synthetic-crowdhuman.py
_base_ = './fcos_tiny_synthetic-crowdhuman.py'

custom_hooks = [
    dict(
        type='OdamTrainHook',
        loss_weight=0.5,
        grid_short_edge=32,
        max_positives=64,
        negatives='overlap',
        warmup_iters=100)
]
