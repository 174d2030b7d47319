# RetinaNet R50 on CrowdHuman post-processed with Odam-NMS; thresholds as the
# paper's dense-detector (FCOS) setting: T_iou 0.5, T_h 0.8, T_l 0.2 (the
# paper reports no RetinaNet Odam-NMS numbers).
_base_ = './retinanet_r50_fpn_30e_crowdhuman.py'

# the detector is built with Odam-NMS enabled on its own head (no other
# model of the process changes); the rest is RetinaNet's own arguments
model = dict(
    type='OdamNMSDetector',
    detector_type='RetinaNet',
    test_cfg=dict(
        odam_nms=dict(
            type='OdamNMS', iou_threshold=0.5, t_high=0.8, t_low=0.2)))
