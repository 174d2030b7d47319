# RTMDet-s, 300 epochs on COCO: MMDetection's config unchanged, with the
# mmdet-odam modules registered (explained by RTMDetSepBNAdapter).
_base_ = 'mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py'
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code
