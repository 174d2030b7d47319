"""Explain time and extra peak memory of R50 Cascade R-CNN, Mask R-CNN,
Deformable DETR and DINO (issue 14 families) on one image.

Random weights (no pretrained weights can be downloaded here; time and
memory do not depend on them), a random image kept at ``--size`` by the test
pipeline, ``--num-dets`` detections x ``--targets`` (default the 5 attributes)
through ``explain()``
(exact path for Cascade and the DETR-likes, the batched RoIAlign-adjoint path
for Mask R-CNN's boxes). Prints inference s, explain s, their ratio, and the
peak RSS of the explain call minus that of a plain inference (peaks reset
between phases, as ``benchmarks/detr_encoder_speed.py`` does).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/families_scale.py --threads 1 \
        --size 800 1216 --num-dets 1 --targets score --families dino
"""
import argparse
import os.path as osp
import sys

import numpy as np
import torch

sys.path.insert(0, osp.dirname(__file__))
sys.path.insert(0, osp.join(osp.dirname(__file__), '..'))
from detr_encoder_speed import now, peak_rss_mb, reset_peak_rss  # noqa: E402
from mmdet.apis import inference_detector, init_detector  # noqa: E402
from mmengine.config import Config  # noqa: E402

from mmdet_odam.apis import explain  # noqa: E402
from mmdet_odam.explainers import ATTRIBUTES, ODAM  # noqa: E402

CONFIGS = {
    'cascade': 'configs/cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py',
    'mask': 'configs/mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    'deformable': 'configs/deformable_detr/'
                  'deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
    'dino': 'configs/dino/dino-4scale_r50_8xb2-12e_coco.py',
}


def build_model(family: str, size, num_dets: int):
    torch.manual_seed(0)
    cfg = Config.fromfile(CONFIGS[family])
    cfg.model.backbone.init_cfg = None
    test_cfg = cfg.model.test_cfg
    (test_cfg.rcnn if 'rcnn' in test_cfg else test_cfg).max_per_img = \
        num_dets
    if 'rcnn' in test_cfg:  # random 81-way softmax scores stay below 0.05
        test_cfg.rcnn.score_thr = 0.0
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (size[1], size[0])
    return init_detector(cfg, None, device='cpu').eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--size', type=int, nargs=2, default=(800, 1216),
                   metavar=('H', 'W'))
    p.add_argument('--num-dets', type=int, default=2)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--method', default='auto',
                   choices=('auto', 'fast', 'exact'))
    p.add_argument('--targets', nargs='+', default=list(ATTRIBUTES),
                   choices=list(ATTRIBUTES))
    p.add_argument('--families', nargs='+', default=list(CONFIGS),
                   choices=list(CONFIGS))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    img = np.random.default_rng(0).integers(
        0, 255, (*args.size, 3), dtype=np.uint8)
    print(f'method={args.method}')
    print('| family | image | dets x maps | inference s | explain s | '
          'x inference | extra peak MiB |')
    print('|---|---|---|---|---|---|---|')
    for family in args.families:
        model = build_model(family, args.size, args.num_dets)
        with torch.no_grad():
            inference_detector(model, img)  # warm-up
        reset_peak_rss()
        start = now()
        with torch.no_grad():
            inference_detector(model, img)
        t_inf = now() - start
        peak_inf = peak_rss_mb()
        reset_peak_rss()
        start = now()
        out = explain(model, img, explainer=ODAM(method=args.method),
                      targets=args.targets,
                      score_thr=0.0)
        t_exp = now() - start
        peak_exp = peak_rss_mb()
        dets = len(out.pred_instances)
        print(f'| {family} | {args.size[0]}x{args.size[1]} | '
              f'{dets} x {len(args.targets)} | '
              f'{t_inf:.2f} | {t_exp:.2f} | {t_exp / t_inf:.1f} | '
              f'{peak_exp - peak_inf:.0f} |', flush=True)
        del model, out


if __name__ == '__main__':
    main()
