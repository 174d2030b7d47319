# Mask R-CNN R50 FPN, 1x on COCO: MMDetection's config unchanged, with the
# mmdet-odam modules registered.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code
