# YOLOX-s, 300 epochs on COCO: MMDetection's config unchanged, with the
# mmdet-odam modules registered (explained by YOLOXAdapter).
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code
