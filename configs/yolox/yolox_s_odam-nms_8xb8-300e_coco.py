# YOLOX-s on COCO, post-processed with Odam-NMS (ODAM paper
# Sec. 4.3) instead of the head's batched_nms: T_iou 0.5, T_h 0.8, T_l 0.2
# (the paper's FCOS values; not tuned for this family). Training is
# unchanged.
# YOLOX's own test config keeps every box NMS keeps; Odam-NMS needs a cap.
_base_ = './yolox_s_8xb8-300e_coco.py'

# the detector is built with Odam-NMS enabled on its own head (no other
# model of the process changes); the rest is YOLOX's own arguments
model = dict(
    type='OdamNMSDetector',
    detector_type='YOLOX',
    test_cfg=dict(
        max_per_img=100,
        odam_nms=dict(
            type='OdamNMS', iou_threshold=0.5, t_high=0.8, t_low=0.2)))
