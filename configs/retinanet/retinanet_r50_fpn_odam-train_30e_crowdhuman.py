# RetinaNet R50 on CrowdHuman with Odam-Train (Sec. 3.2): explanation consistency and separation
# losses added by the Odam-Train loss hook; everything else as the base config.
#   python tools/train.py configs/retinanet/retinanet_r50_fpn_odam-train_30e_crowdhuman.py
_base_ = './retinanet_r50_fpn_30e_crowdhuman.py'

custom_hooks = [
    dict(
        type='OdamTrainHook',
        loss_weight=0.5,
        grid_short_edge=50,
        max_positives=128,
        negatives='overlap',
        warmup_iters=500)
]
