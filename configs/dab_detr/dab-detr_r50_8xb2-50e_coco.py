# DAB-DETR R50, 50e on COCO: MMDetection's config unchanged, with the
# mmdet-odam modules registered.
_base_ = 'mmdet::dab_detr/dab-detr_r50_8xb2-50e_coco.py'
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code
