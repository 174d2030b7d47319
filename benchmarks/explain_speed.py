"""Speed and fidelity of ODAM's batched (receptive-field) path.

Measures, in one process so that ratios are robust to machine noise:

* the tiny synthetic FCOS (trained checkpoint): plain ``inference_detector`` time
  vs. ``explain`` of all detections x five targets (batched path) for a fixed
  number of detections, and the Pearson correlation of every batched map with
  its exact map over several validation images;
* FCOS-R50 at 800x1216 (random weights: no pretrained weights can be
  downloaded here; speed does not depend on them): inference vs. score maps
  for 100 detections.

Usage::

    python benchmarks/explain_speed.py \
        --checkpoint checkpoints/fcos_tiny_synthetic-crowd.pth \
        --images data/synthetic_crowd/images/val --num-images 5 [--r50]
"""
import argparse
import functools
import glob
import math
import os.path as osp
import statistics
import sys
import time

import mmcv
import numpy as np
import torch

sys.path.insert(0, osp.join(osp.dirname(__file__), '..'))
import mmdet_odam  # noqa: E402,F401
from mmdet.apis import inference_detector, init_detector  # noqa: E402
from mmengine.config import Config  # noqa: E402

from mmdet_odam.apis import explain  # noqa: E402
from mmdet_odam.explainers import ODAM  # noqa: E402
from mmdet_odam.structures import HeatMaps  # noqa: E402
from mmdet_odam.explainers.adapters.dense import \
    DenseHeadAdapter  # noqa: E402

TINY_CONFIG = 'configs/fcos/fcos_tiny_synthetic-crowd.py'
R50_CONFIG = 'configs/fcos/fcos_r50_fpn_gn-head_1x_coco.py'
BOX_TARGETS = ('score', 'x1', 'y1', 'x2', 'y2')


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-12)


def tiny_fcos_speed(args) -> None:
    """Explain time vs inference time for a fixed number of detections."""
    model = init_detector(TINY_CONFIG, args.checkpoint, device=args.device)
    img = mmcv.imread(args.speed_image)
    explainer = ODAM(method='fast')
    print(f'\n## tiny FCOS speed on {args.speed_image} (test_cfg.score_thr=0 '
          'so that max_per_img detections are kept), all detections x 5 '
          'targets')
    print('| detections | inference s | ODAM fast s | fast / inf |')
    print('|---|---|---|---|')
    for num in args.num_dets:
        model.bbox_head.test_cfg.score_thr = 0.0
        model.bbox_head.test_cfg.max_per_img = num
        out = explain(model, img, explainer=explainer, targets=BOX_TARGETS,
                      score_thr=0.0)
        t_inf = timed(lambda: inference_detector(model, img), args.repeats)
        t_fast = timed(lambda: explain(model, img, explainer=explainer,
                                       targets=BOX_TARGETS, score_thr=0.0),
                       args.repeats)
        print(f'| {len(out.pred_instances)} | {t_inf:.4f} | {t_fast:.4f} | '
              f'{t_fast / t_inf:.2f} |')


def tiny_fcos_breakdown(args) -> None:
    """Where the time of one explanation (30 detections x 5 targets) goes.

    Phases are timed by wrapping the explainer's steps; "output allocation"
    is a fresh zero tensor of the output's shape, timed alone (its first
    touch is page faults: this is the cost of materialising the result).
    """
    model = init_detector(TINY_CONFIG, args.checkpoint, device=args.device)
    model.bbox_head.test_cfg.score_thr = 0.0
    model.bbox_head.test_cfg.max_per_img = 30
    img = mmcv.imread(args.speed_image)
    explainer = ODAM(method='fast')
    spent = {}
    originals = []

    def timed_attr(owner, name, key):
        func = getattr(owner, name)
        originals.append((owner, name, func))

        @functools.wraps(func)
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return func(*a, **k)
            finally:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - start
        setattr(owner, name, wrapper)

    timed_attr(DenseHeadAdapter, 'forward', 'forward (detections, tower)')
    timed_attr(DenseHeadAdapter, 'fast_gradients',
               'gradients (patch backward)')
    timed_attr(ODAM, '_level_windows', 'maps (smoothing, grad x act)')
    timed_attr(HeatMaps, '_compute_peaks', 'normalisation (map peaks)')
    timed_attr(ODAM, '_image_maps', 'image maps')
    try:
        def run():
            return explain(model, img, explainer=explainer,
                           targets=BOX_TARGETS, score_thr=0.0)
        out = run()
        spent.clear()
        t_explain = timed(run, args.repeats)
        total = {k: v / (args.repeats + 1) for k, v in spent.items()}
    finally:
        for owner, name, func in originals:
            setattr(owner, name, func)
    heatmaps = out.pred_instances.heatmaps
    shape = tuple(heatmaps.shape)
    t_render = timed(heatmaps.to_tensor, args.repeats)
    t_inf = timed(lambda: inference_detector(model, img), args.repeats)
    steps = ('gradients (patch backward)', 'maps (smoothing, grad x act)',
             'normalisation (map peaks)')
    rows = [(k, total.get(k, 0.0)) for k in
            ('forward (detections, tower)', ) + steps]
    rows.append(('the rest of the image maps (bookkeeping)',
                 total['image maps'] - sum(total.get(k, 0.0)
                                           for k in steps)))
    print(f'\n## tiny FCOS: where {shape[0]} detections x 5 targets go '
          f'(explain {t_explain:.4f} s, inference {t_inf:.4f} s; maps kept '
          f'as windows: {heatmaps.nbytes / 2 ** 20:.2f} MiB, '
          f'{4 * math.prod(shape) / 2 ** 20:.0f} MiB rendered)')
    print('| phase | s | x inference |\n|---|---|---|')
    for key, value in rows:
        print(f'| {key} | {value:.4f} | {value / t_inf:.2f} |')
    print(f'Rendering all maps to the image on demand (to_tensor): '
          f'{t_render:.4f} s = {t_render / t_inf:.2f}x inference')


def tiny_fcos_fidelity(args) -> None:
    """Fast vs exact maps of all detections (score >= score_thr)."""
    model = init_detector(TINY_CONFIG, args.checkpoint, device=args.device)
    images = sorted(glob.glob(osp.join(args.images, '*.png')))
    if not images:
        sys.exit(f'error: no .png images in {args.images}')
    images = images[:args.num_images]
    fast, exact = ODAM(method='fast'), ODAM(method='exact')
    corrs, count = [], 0
    for path in images:
        img = mmcv.imread(path)
        out = explain(model, img, explainer=fast, targets=BOX_TARGETS,
                      score_thr=args.score_thr)
        ref = explain(model, img, explainer=exact, targets=BOX_TARGETS,
                      score_thr=args.score_thr)
        count += len(out.pred_instances)
        maps, ref_maps = (o.pred_instances.heatmaps.to_tensor().flatten(0, 1)
                          for o in (out, ref))
        # maps that are all zero in the exact path carry no signal
        alive = ref_maps.flatten(1).amax(1) > 0
        corrs.append(pearson(maps[alive], ref_maps[alive]))
    corr = torch.cat(corrs)
    print(f'\n## tiny FCOS fidelity: {len(images)} val images, {count} '
          f'detections (score >= {args.score_thr}) x 5 targets')
    print(f'fast vs exact Pearson over {len(corr)} maps: mean '
          f'{corr.mean():.4f}, median {corr.median():.4f}, '
          f'5th percentile {corr.quantile(0.05):.4f}, min {corr.min():.4f}')


def r50_fcos(args) -> None:
    cfg = Config.fromfile(R50_CONFIG)
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.score_thr = 0.0
    cfg.model.test_cfg.max_per_img = 100
    torch.manual_seed(0)
    model = init_detector(cfg, None, device=args.device)
    model.dataset_meta = dict(classes=tuple(f'c{i}' for i in range(80)))
    img = np.random.default_rng(0).integers(0, 255, (800, 1216, 3),
                                            dtype=np.uint8)
    explainer = ODAM(method='fast')
    out = explain(model, img, explainer=explainer, targets=('score', ),
                  score_thr=0.0)
    t_inf = timed(lambda: inference_detector(model, img), args.r50_repeats)
    t_fast = timed(lambda: explain(model, img, explainer=explainer,
                                   targets=('score', ), score_thr=0.0),
                   args.r50_repeats)
    print(f'\n## FCOS-R50 at 800x1216, {len(out.pred_instances)} detections,'
          ' score maps')
    print('| inference s | ODAM fast s | fast / inf |\n|---|---|---|')
    print(f'| {t_inf:.2f} | {t_fast:.2f} | {t_fast / t_inf:.2f} |')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--checkpoint',
                        default='checkpoints/fcos_tiny_synthetic-crowd.pth')
    parser.add_argument('--images', default='data/synthetic_crowd/images/val')
    parser.add_argument('--num-images', type=int, default=5)
    parser.add_argument('--score-thr', type=float, default=0.05)
    parser.add_argument('--speed-image', default='demo/crowd.png')
    parser.add_argument('--num-dets', type=int, nargs='+', default=[30, 100])
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--r50', action='store_true',
                        help='also measure FCOS-R50 at 800x1216')
    parser.add_argument('--r50-repeats', type=int, default=3)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch CPU threads (1 keeps ratios stable on a '
                        'shared machine; 0 = torch default)')
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if not osp.isfile(args.checkpoint):
        sys.exit(f'error: checkpoint not found: {args.checkpoint}')
    tiny_fcos_speed(args)
    tiny_fcos_breakdown(args)
    tiny_fcos_fidelity(args)
    if args.r50:
        r50_fcos(args)


if __name__ == '__main__':
    main()
