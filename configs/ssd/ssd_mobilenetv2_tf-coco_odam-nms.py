# The converted TF SSD-MobileNetV2 (./ssd_mobilenetv2_tf-coco.py) post-processed
# with Odam-NMS (ODAM paper Sec. 4.3) instead of NMS, at the paper's
# dense-detector thresholds T_iou 0.5, T_h 0.8, T_l 0.2:
#   python benchmarks/real_ssd_odam_nms.py   # pedestrian-video frames
_base_ = './ssd_mobilenetv2_tf-coco.py'

# the detector is built with Odam-NMS enabled on its own head (no other model
# of the process changes)
model = dict(
    type='OdamNMSDetector',
    detector_type='SingleStageDetector',
    test_cfg=dict(
        odam_nms=dict(
            type='OdamNMS', iou_threshold=0.5, t_high=0.8, t_low=0.2)))
