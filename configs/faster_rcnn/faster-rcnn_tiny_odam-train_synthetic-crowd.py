# Tiny Faster R-CNN on the synthetic crowd data (maps at RoI features) with Odam-Train (Sec. 3.2): explanation consistency and separation
# losses added by the Odam-Train loss hook; everything else as the base config.
#   python tools/train.py configs/faster_rcnn/faster-rcnn_tiny_odam-train_synthetic-crowd.py
_base_ = './faster-rcnn_tiny_synthetic-crowd.py'

custom_hooks = [
    dict(
        type='OdamTrainHook',
        loss_weight=0.2,
        grid_short_edge=32,
        max_positives=64,
        negatives='overlap',
        warmup_iters=100)
]
