# FCOS R50-caffe FPN GN-head, 1x on COCO: MMDetection's config unchanged, with
# the mmdet-odam modules registered.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code
