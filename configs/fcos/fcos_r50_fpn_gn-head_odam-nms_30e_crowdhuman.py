# FCOS R50 on CrowdHuman post-processed with Odam-NMS (ODAM paper Sec. 4.3,
# Tables 5 and 8): T_iou 0.5, T_h 0.8, T_l 0.2 (the paper's FCOS values, from
# the threshold sweep of App. A.4.1). Training is unchanged; pair with an
# Odam-Train checkpoint for the paper's best numbers.
_base_ = './fcos_r50_fpn_gn-head_30e_crowdhuman.py'

# the detector is built with Odam-NMS enabled on its own head (no other
# model of the process changes); the rest is FCOS's own arguments
model = dict(
    type='OdamNMSDetector',
    detector_type='FCOS',
    test_cfg=dict(
        odam_nms=dict(
            type='OdamNMS', iou_threshold=0.5, t_high=0.8, t_low=0.2)))
