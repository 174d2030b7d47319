# Faster R-CNN R50 on CrowdHuman post-processed with Odam-NMS in the R-CNN
# stage (ODAM paper Sec. 4.3, Tables 5 and 8). Thresholds of the authors'
# R-CNN code: T_iou 0.6, T_h 0.7, T_l 0.3 (the paper's text quotes 0.5 / 0.8 /
# 0.2 for all NMS methods).
_base_ = './faster-rcnn_r50_fpn_30e_crowdhuman.py'

# the detector is built with Odam-NMS enabled on its own head (no other
# model of the process changes); the rest is FasterRCNN's own arguments
model = dict(
    type='OdamNMSDetector',
    detector_type='FasterRCNN',
    test_cfg=dict(
        rcnn=dict(
            odam_nms=dict(
                type='OdamNMS', iou_threshold=0.6, t_high=0.7,
                t_low=0.3))))
