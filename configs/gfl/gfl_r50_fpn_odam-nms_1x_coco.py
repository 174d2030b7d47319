# GFL R50 FPN on COCO, post-processed with Odam-NMS (ODAM paper
# Sec. 4.3) instead of the head's batched_nms: T_iou 0.5, T_h 0.8, T_l 0.2
# (the paper's FCOS values; not tuned for this family). Training is
# unchanged.
_base_ = './gfl_r50_fpn_1x_coco.py'

# the detector is built with Odam-NMS enabled on its own head (no other
# model of the process changes); the rest is GFL's own arguments
model = dict(
    type='OdamNMSDetector',
    detector_type='GFL',
    test_cfg=dict(
        odam_nms=dict(
            type='OdamNMS', iou_threshold=0.5, t_high=0.8, t_low=0.2)))
