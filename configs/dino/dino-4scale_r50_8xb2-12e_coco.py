# DINO 4-scale R50, 12e on COCO: MMDetection's config unchanged, with the
# mmdet-odam modules registered.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code
