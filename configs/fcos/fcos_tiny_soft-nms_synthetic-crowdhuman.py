# Tiny FCOS on the CrowdHuman-format synthetic crowd data with mmcv's
# Soft-NMS, the paper's Soft-NMS baseline (Sec. 4.3): Gaussian decay with
# sigma 0.5 and final score threshold 0.05 (mmcv ignores `iou_threshold` for
# the Gaussian method; it is set to T_iou for the record).
_base_ = './fcos_tiny_synthetic-crowdhuman.py'

model = dict(
    test_cfg=dict(
        nms=dict(
            _delete_=True,
            type='soft_nms',
            iou_threshold=0.5,
            sigma=0.5,
            min_score=0.05,
            method='gaussian')))
