# Tiny FCOS on the CrowdHuman-format synthetic crowd data, post-processed with
# Odam-NMS (ODAM paper Sec. 4.3 / Alg. 1) instead of NMS: candidates whose
# boxes overlap (IoU > T_iou) are both kept when their ODAM maps correlate
# below T_l; a candidate that overlaps a kept one less is still removed as a
# duplicate when their maps correlate above T_h. FCOS values of the paper:
# T_iou 0.5, T_h 0.8, T_l 0.2. Maps are compared on the paper's grid with short
# edge 50 (on 256 px inputs it raised crowd recall over a 32-cell grid, one
# cell per stride-8 feature: see the README's Odam-NMS section).
#   python tools/test.py \
#       configs/fcos/fcos_tiny_odam-nms_synthetic-crowdhuman.py \
#       checkpoints/fcos_tiny_synthetic-crowd.pth
_base_ = './fcos_tiny_synthetic-crowdhuman.py'

# the detector is built with Odam-NMS enabled on its own head (no other
# model of the process changes); the rest is FCOS's own arguments
model = dict(
    type='OdamNMSDetector',
    detector_type='FCOS',
    test_cfg=dict(
        odam_nms=dict(
            type='OdamNMS',
            iou_threshold=0.5,
            t_high=0.8,
            t_low=0.2,
            grid_short_edge=50)))
