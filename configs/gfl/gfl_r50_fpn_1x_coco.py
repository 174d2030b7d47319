# GFL R50 FPN, 1x on COCO: MMDetection's config unchanged, with the
# mmdet-odam modules registered (explained by GFLAdapter).
_base_ = 'mmdet::gfl/gfl_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code
