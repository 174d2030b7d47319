# ATSS R50 FPN, 1x on COCO: MMDetection's config unchanged, with the
# mmdet-odam modules registered (explained by DenseHeadAdapter: centerness is
# its score factor, as in FCOS).
_base_ = 'mmdet::atss/atss_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code
