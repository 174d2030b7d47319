"""Speed of Odam-NMS vs the standard NMS pipeline (per image, one process).

For each image the same detector runs ``inference_detector`` with its standard
``test_cfg`` and with ``test_cfg.odam_nms`` (inference + candidate maps +
Odam-NMS); medians after a warm-up, in one process so that ratios are robust to
machine noise. Reported per setting: candidates entering NMS, candidates that
got a map, time spent in the batched map computation, in the greedy pass
itself (excluding maps), total time and the ratio to the standard pipeline,
and the arithmetic of both pipelines (GFLOP of convolutions and matrix
products, counted by ``torch.utils.flop_counter``; element-wise work is not
counted): the FLOP ratio is what the time ratio would be if Odam-NMS's extra
work ran as efficiently as the detector itself.

* tiny trained FCOS (``checkpoints/fcos_tiny_synthetic-crowd.pth``) on
  ``demo/crowd.png`` and ``--num-synthetic`` generated crowd images (256 px);
* "thousands of candidates": the same model on an upscaled 1024 px crowd image
  with ``score_thr=0`` (3000 candidates), for several ``max_candidates`` caps;
* ``--r50``: FCOS-R50-GN at 800x1216 with random weights (no pretrained weights
  can be downloaded here; speed does not depend on them), ``score_thr=0`` since
  random heads score ~0.01, i.e. 5000 candidates.

Usage::

    python benchmarks/odam_nms_speed.py [--threads 1] [--repeats 3] [--r50]
"""
import argparse
import glob
import os.path as osp
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Optional

import mmcv
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, osp.join(osp.dirname(__file__), '..'))
import mmdet_odam  # noqa: E402,F401
from mmdet.apis import inference_detector, init_detector  # noqa: E402
from mmengine.config import Config  # noqa: E402

from mmdet_odam.models import candidate_maps, odam_nms  # noqa: E402
from mmdet_odam.models import enable_odam_nms  # noqa: E402

TINY_CONFIG = 'configs/fcos/fcos_tiny_synthetic-crowd.py'
R50_CONFIG = 'configs/fcos/fcos_r50_fpn_gn-head_1x_coco.py'
SETTINGS = {
    'classical (T_l=0, T_h=1)': dict(t_low=0.0, t_high=1.0),
    'paper (T_l=0.2, T_h=0.8)': dict(t_low=0.2, t_high=0.8),
}


class Counters:
    """Time and candidates of the map computation and the greedy pass."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.map_s = self.greedy_s = 0.0
        self.maps = self.candidates = 0


COUNTERS = Counters()


@contextmanager
def instrumented():
    """Wrap ``CandidateMapper.dense`` and ``odam_nms._greedy`` with timers."""
    dense, greedy = candidate_maps.CandidateMapper.dense, odam_nms._greedy

    def timed_dense(self, head, feats, norm_stats, candidates, *args, **kw):
        start = time.perf_counter()
        out = dense(self, head, feats, norm_stats, candidates, *args, **kw)
        COUNTERS.map_s += time.perf_counter() - start
        COUNTERS.maps += sum(len(c) for c in candidates)
        return out

    def timed_greedy(boxes, scores, *args, **kw):
        start = time.perf_counter()
        out = greedy(boxes, scores, *args, **kw)
        COUNTERS.greedy_s += time.perf_counter() - start
        COUNTERS.candidates += len(scores)
        return out

    candidate_maps.CandidateMapper.dense = timed_dense
    odam_nms._greedy = timed_greedy
    try:
        yield
    finally:
        candidate_maps.CandidateMapper.dense = dense
        odam_nms._greedy = greedy


def gflop(model, img, odam: Optional[dict]) -> float:
    """GFLOP of one ``inference_detector`` call, with ``odam`` as
    ``test_cfg.odam_nms`` (None: the standard pipeline)."""
    head_cfg = model.bbox_head.test_cfg
    head_cfg.pop('odam_nms', None)
    if odam is not None:
        head_cfg['odam_nms'] = dict(type='OdamNMS', **odam)
    try:
        with FlopCounterMode(display=False) as counter:
            inference_detector(model, img)
    finally:
        head_cfg.pop('odam_nms', None)
    return counter.get_total_flops() / 1e9


def compare(model, img, settings: dict, repeats: int, label: str) -> None:
    """Print one table row per Odam-NMS setting for one image.

    Standard and Odam-NMS runs alternate (after one warm-up each) so that
    both see the same machine load; medians are reported.
    """
    head_cfg = model.bbox_head.test_cfg
    max_per_img = head_cfg.max_per_img
    for name, odam in settings.items():
        odam = dict(odam)
        head_cfg.max_per_img = odam.pop('max_per_img', max_per_img)
        std_times, odam_times, map_s, nms_s = [], [], [], []
        for rep in range(repeats + 1):
            head_cfg.pop('odam_nms', None)
            start = time.perf_counter()
            inference_detector(model, img)
            std_times.append(time.perf_counter() - start)
            head_cfg['odam_nms'] = dict(type='OdamNMS', **odam)
            COUNTERS.reset()
            with instrumented():
                start = time.perf_counter()
                inference_detector(model, img)
                odam_times.append(time.perf_counter() - start)
            map_s.append(COUNTERS.map_s)
            nms_s.append(COUNTERS.greedy_s - COUNTERS.map_s)
        head_cfg.pop('odam_nms', None)
        flop_std, flop_odam = gflop(model, img, None), gflop(model, img, odam)
        head_cfg.max_per_img = max_per_img
        t_std = statistics.median(std_times[1:])
        t_odam = statistics.median(odam_times[1:])
        print(f'| {label} | {name} | {COUNTERS.candidates} | {COUNTERS.maps} '
              f'| {t_std:.3f} | {statistics.median(map_s[1:]):.3f} | '
              f'{statistics.median(nms_s[1:]):.3f} | {t_odam:.3f} | '
              f'{t_odam / t_std:.2f} | {flop_std:.2f} | {flop_odam:.2f} | '
              f'{flop_odam / flop_std:.2f} |', flush=True)


HEADER = ('| image | setting | candidates | maps | standard s | maps s | '
          'greedy s | Odam-NMS s | ratio | GFLOP standard | GFLOP Odam-NMS | '
          'FLOP ratio |\n' + '|---' * 12 + '|')


def synthetic_images(num: int, seed: int):
    from mmdet_odam.datasets.synthetic_crowd import generate_synthetic_crowd
    if num <= 0:
        return []
    with tempfile.TemporaryDirectory(prefix='odam_nms_speed_') as tmp:
        generate_synthetic_crowd(tmp, num_train=0, num_val=num, img_size=256,
                                 crowd_ratio=0.5, objects_per_image=(8, 14),
                                 seed=seed)
        paths = sorted(glob.glob(osp.join(tmp, 'images', 'val', '*.png')))
        return [(osp.basename(p), mmcv.imread(p)) for p in paths]


def tiny(args) -> None:
    model = init_detector(TINY_CONFIG, args.checkpoint, device='cpu')
    enable_odam_nms(model)  # test_cfg.odam_nms then takes effect
    images = [('demo/crowd.png', mmcv.imread('demo/crowd.png'))]
    images += synthetic_images(args.num_synthetic, args.seed)
    print(f'\n## tiny FCOS (trained), test_cfg: score_thr '
          f'{model.bbox_head.test_cfg.score_thr}, nms_pre '
          f'{model.bbox_head.test_cfg.nms_pre}, max_per_img '
          f'{model.bbox_head.test_cfg.max_per_img}; threads '
          f'{torch.get_num_threads()}')
    print(HEADER)
    for name, img in images:
        compare(model, img, SETTINGS, args.repeats, name)


def thousands(args) -> None:
    cfg = Config.fromfile(TINY_CONFIG)
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (1024, 1024)
    cfg.model.test_cfg.score_thr = 0.0
    model = init_detector(cfg, args.checkpoint, device='cpu')
    enable_odam_nms(model)  # test_cfg.odam_nms then takes effect
    img = mmcv.imresize(mmcv.imread('demo/crowd.png'), (1024, 1024))
    print('\n## thousands of candidates: tiny FCOS on crowd.png upscaled to '
          '1024 px, score_thr 0, nms_pre 1000 per level; paper thresholds, '
          'varying max_candidates (maps beyond the cap: IoU rule)')
    print(HEADER)
    caps = {f'max_candidates={cap}': dict(max_candidates=cap)
            for cap in args.caps}
    compare(model, img, caps, args.repeats, 'crowd 1024')


def r50(args) -> None:
    cfg = Config.fromfile(R50_CONFIG)
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.score_thr = 0.0
    torch.manual_seed(0)
    model = init_detector(cfg, None, device='cpu')
    enable_odam_nms(model)  # test_cfg.odam_nms then takes effect
    model.dataset_meta = dict(classes=tuple(f'c{i}' for i in range(80)))
    img = np.random.default_rng(0).integers(0, 255, (800, 1216, 3),
                                            dtype=np.uint8)
    print('\n## FCOS-R50-GN at 800x1216, random weights, score_thr 0 '
          '(nms_pre 1000 per level), max_per_img 100 unless said')
    print(HEADER)
    settings = dict(SETTINGS)
    # random boxes hardly overlap: 100 are kept within the first block, so
    # also run the worst case (1000 kept: max_candidates maps are computed)
    settings['paper, max_per_img=1000'] = dict(t_low=0.2, t_high=0.8,
                                               max_per_img=1000)
    compare(model, img, settings, args.r50_repeats, 'random 800x1216')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--checkpoint',
                        default='checkpoints/fcos_tiny_synthetic-crowd.pth')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--num-synthetic', type=int, default=3)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--caps', type=int, nargs='+',
                        default=[0, 1000, 250])
    parser.add_argument('--skip-thousands', action='store_true')
    parser.add_argument('--r50', action='store_true',
                        help='include FCOS-R50 at 800x1216 (slow on CPU)')
    parser.add_argument('--r50-repeats', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    tiny(args)
    if not args.skip_thousands:
        thousands(args)
    if args.r50:
        r50(args)


if __name__ == '__main__':
    main()
