# DETR R50 on CrowdHuman (positives: matched query per decoder layer) with Odam-Train (Sec. 3.2): explanation consistency and separation
# losses added by the Odam-Train loss hook; everything else as the base config.
#   python tools/train.py configs/detr/detr_r50_odam-train_crowdhuman.py
_base_ = './detr_r50_crowdhuman.py'

custom_hooks = [
    dict(
        type='OdamTrainHook',
        loss_weight=0.2,
        grid_short_edge=50,
        max_positives=64,
        negatives='overlap',
        warmup_iters=500)
]
