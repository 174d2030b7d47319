# FCOS R50 on CrowdHuman with Odam-Train (Sec. 3.2): explanation consistency and separation
# losses added by the Odam-Train loss hook; everything else as the base config.
#   python tools/train.py configs/fcos/fcos_r50_fpn_gn-head_odam-train_30e_crowdhuman.py
_base_ = './fcos_r50_fpn_gn-head_30e_crowdhuman.py'

custom_hooks = [
    dict(
        type='OdamTrainHook',
        loss_weight=0.5,
        grid_short_edge=50,
        max_positives=128,
        negatives='overlap',
        warmup_iters=500)
]
