# DETR R50, 150 epochs on COCO: MMDetection's config unchanged, with the
# mmdet-odam modules registered.
_base_ = 'mmdet::detr/detr_r50_8xb2-150e_coco.py'
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code
