# Tiny FCOS (~1M parameters) trained from scratch on the synthetic crowd
# dataset (256x256 images, 1 class 'person'), for CPU demos and tests.
#   python tools/generate_synthetic_crowd.py --out-dir data/synthetic_crowd
#   python tools/train.py configs/fcos/fcos_tiny_synthetic-crowd.py
# Model: see configs/_base_/models/fcos_tiny.py (MMDetection's FCOS shrunk).
_base_ = [
    '../_base_/models/fcos_tiny.py',
    '../_base_/datasets/synthetic_crowd_coco.py',
    '../_base_/schedules/tiny_cpu.py',
]
custom_imports = dict(imports=['mmdet_odam'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'  # loads checkpoints without running code

# schedule and runtime: ../_base_/schedules/tiny_cpu.py (20 epochs)
optim_wrapper = dict(
    paramwise_cfg=dict(bias_lr_mult=2., bias_decay_mult=0.))
