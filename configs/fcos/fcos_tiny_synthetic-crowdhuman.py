# Tiny FCOS of `fcos_tiny_synthetic-crowd.py` on the CrowdHuman-format copy of
# the synthetic crowd dataset (odgt), evaluated with MMDetection's
# CrowdHumanMetric (AP50, MR^-2, JI) like the real CrowdHuman configs.
#   python tools/generate_synthetic_crowd.py --out-dir data/synthetic_crowd
#   python tools/train.py configs/fcos/fcos_tiny_synthetic-crowdhuman.py
_base_ = [
    '../_base_/models/fcos_tiny.py',
    '../_base_/datasets/synthetic_crowd_crowdhuman.py',
    '../_base_/schedules/tiny_cpu.py',
]
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code

# schedule and runtime: ../_base_/schedules/tiny_cpu.py (20 epochs)
optim_wrapper = dict(
    paramwise_cfg=dict(bias_lr_mult=2., bias_decay_mult=0.))
