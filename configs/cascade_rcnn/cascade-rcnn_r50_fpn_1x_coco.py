# Cascade R-CNN R50 FPN, 1x on COCO: MMDetection's config unchanged, with the
# mmdet-odam modules registered.
_base_ = 'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code
