"""Faster R-CNN R50 on FPN levels: batched exact maps vs one autograd call
per (detection, attribute) pair.

Measured in one process (ratios are robust to this machine's noise), random
weights (speed and memory do not depend on them), an image the test
pipeline does not resize, N detections x 5 attributes (+ 'combined'):

* inference (``inference_detector``): time and peak RSS;
* gradients: the adapter's forward plus, for every pair, the gradient on the
  RoI's FPN level, by the batched path (one box-head backward, RoIAlign's
  adjoint on local windows; chunks of ``--chunk-size`` detections as the
  explainer runs them) and by the exact path (one autograd call per pair
  through the graph, full-size gradients; only ``--exact-dets`` detections,
  extrapolated to N per pair); the two are also compared;
* ``explain()`` end to end with ``method='fast'`` (N detections) and
  ``method='exact'`` (``--exact-dets`` detections, extrapolated).

Peak RSS is the kernel's high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs`` before each measurement, after returning freed
memory with ``malloc_trim``), reported above the inference's own peak.

Usage::

    python benchmarks/rcnn_batched_speed.py --num-dets 100 --exact-dets 2
"""
import argparse
import ctypes
import os.path as osp
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, osp.join(osp.dirname(__file__), '..'))
import mmdet_odam  # noqa: E402,F401
from mmdet.apis import inference_detector, init_detector  # noqa: E402
from mmengine.config import Config  # noqa: E402

from mmdet_odam.apis import explain  # noqa: E402
from mmdet_odam.apis.explain import preprocess  # noqa: E402
from mmdet_odam.explainers import ATTRIBUTES, ODAM, build_adapter  # noqa
from mmdet_odam.explainers.odam import TARGETS  # noqa: E402

CONFIG = 'configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
MIB = 1024.0 ** 2


def _libc():
    try:
        return ctypes.CDLL('libc.so.6')
    except OSError:
        return None


LIBC = _libc()


def _status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def measured(fn):
    """Run ``fn`` once: (result, seconds, peak RSS in MiB during the run)."""
    if LIBC is not None:
        LIBC.malloc_trim(0)  # freed memory back to the OS: a fair baseline
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak RSS to the current RSS
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    return out, seconds, _status_kib('VmHWM') * 1024 / MIB


def build_model(size, num_dets: int):
    torch.manual_seed(0)
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.init_cfg = None  # random weights: nothing downloaded
    cfg.model.test_cfg.rcnn.max_per_img = num_dets
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # keep exactly num_dets
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (size[1], size[0])  # the image is not resized
    return init_detector(cfg, None, device='cpu').eval()



def fast_gradients(model, inputs, samples, chunk: int):
    """Forward + batched gradients of every pair, chunk by chunk (pieces of
    a chunk are dropped before the next, as the explainer consumes them)."""
    adapter = build_adapter(model, 'neck')
    attrs = list(range(len(ATTRIBUTES)))
    with torch.enable_grad():
        state = adapter.forward(inputs, samples, keep_graph=False)
        num = len(state.results[0])
        cells = 0
        start = time.perf_counter()
        for first in range(0, num, chunk):
            dets = list(range(first, min(first + chunk, num)))
            pieces = adapter.fast_gradients(state, 0, dets, attrs)
            cells = max(cells, sum(p.grads.numel() for p in pieces))
            del pieces
        grad_s = time.perf_counter() - start
    return num, grad_s, cells


def exact_gradients(model, inputs, samples, num_exact: int):
    adapter = build_adapter(model, 'neck')
    attrs = list(range(len(ATTRIBUTES)))
    with torch.enable_grad():
        state = adapter.forward(inputs, samples, keep_graph=True)
        start = time.perf_counter()
        pieces = adapter.exact_gradients(state, 0, list(range(num_exact)),
                                         attrs)
        grad_s = time.perf_counter() - start
        fast = adapter.fast_gradients(state, 0, list(range(num_exact)),
                                      attrs)
    return grad_s, max_relative_difference(fast, pieces, state)


def max_relative_difference(fast, exact, state) -> float:
    """Largest |fast - exact| / max|exact| over the pairs (fast windows
    pasted onto their level)."""
    from mmdet_odam.explainers.odam import paste_windows_nchw
    reference = {}
    for piece in exact:
        for grad, pair in zip(piece.grads, piece.pair_index.tolist()):
            reference[pair] = grad
    worst = 0.0
    for piece in fast:
        full = paste_windows_nchw(piece.grads, piece.offsets,
                                  state.activations[piece.level].shape[-2:])
        for grad, pair in zip(full, piece.pair_index.tolist()):
            ref = reference[pair]
            worst = max(worst, float((grad - ref).abs().max() /
                                     ref.abs().max().clamp(min=1e-30)))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, nargs=2, default=(800, 1216),
                        metavar=('H', 'W'))
    parser.add_argument('--num-dets', type=int, default=100)
    parser.add_argument('--exact-dets', type=int, default=2,
                        help='detections explained by the exact path (x 5 '
                        'pairs), extrapolated to --num-dets')
    parser.add_argument('--chunk-size', type=int, default=64,
                        help="ODAM's chunk_size (detections per chunk)")
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=2,
                        help='inference runs (median) after a warm-up')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size, num = tuple(args.size), args.num_dets
    model = build_model(size, num)
    image = np.random.default_rng(0).integers(0, 255, (*size, 3), np.uint8)
    inputs, samples = preprocess(model, image)
    attrs = len(ATTRIBUTES)

    inference_detector(model, image)  # warm-up
    runs = [measured(lambda: inference_detector(model, image))
            for _ in range(args.repeats)]
    t_inf = statistics.median(r[1] for r in runs)
    peak_inf = max(r[2] for r in runs)
    print(f'# Faster R-CNN R50 {size[0]}x{size[1]}, random weights, '
          f'{args.threads} thread(s), {num} detections x {attrs} attributes')
    print(f'inference: {t_inf:.2f} s, peak RSS {peak_inf:.0f} MiB')

    # -- gradients only: the part the batched path replaces ---------------
    (n_fast, g_fast, cells), t_fast, peak_fast = measured(
        lambda: fast_gradients(model, inputs, samples, args.chunk_size))
    assert n_fast == num, f'{n_fast} detections, expected {num}'
    (g_exact, rel), t_exact, peak_exact = measured(
        lambda: exact_gradients(model, inputs, samples, args.exact_dets))
    pairs_exact = args.exact_dets * attrs
    per_pair_exact = g_exact / pairs_exact
    per_pair_fast = g_fast / (num * attrs)
    extra_exact_pair = max(peak_exact - peak_inf, 0.0) / pairs_exact
    in_chunk = min(args.chunk_size, num) * attrs
    print('\n## gradients on the FPN level of each RoI '
          '(forward + every pair)')
    print('| path | pairs | forward + gradients s | gradients s | '
          's / pair | x inference | peak RSS above inference MiB |')
    print('|---|---|---|---|---|---|---|')
    print(f'| batched (RoIAlign adjoint, windows) | {num * attrs} | '
          f'{t_fast:.2f} | {g_fast:.2f} | {per_pair_fast:.4f} | '
          f'{t_fast / t_inf:.2f} | {peak_fast - peak_inf:.0f} '
          f'(largest chunk of windows: {cells * 4 / MIB:.0f}) |')
    exact_total = t_exact - g_exact + per_pair_exact * num * attrs
    print(f'| exact (one autograd call per pair), measured | {pairs_exact} | '
          f'{t_exact:.2f} | {g_exact:.2f} | {per_pair_exact:.4f} | '
          f'{t_exact / t_inf:.2f} | {peak_exact - peak_inf:.0f} '
          f'({extra_exact_pair:.0f} per pair) |')
    print(f'| exact, extrapolated to {num * attrs} pairs | {num * attrs} | '
          f'{exact_total:.1f} | {per_pair_exact * num * attrs:.1f} | '
          f'{per_pair_exact:.4f} | {exact_total / t_inf:.1f} | '
          f'~{extra_exact_pair * in_chunk:.0f} (a chunk of {in_chunk} '
          'pairs) |')
    print(f'exact / batched per pair: {per_pair_exact / per_pair_fast:.0f}x;'
          f' batched vs exact gradients on the measured pairs: max '
          f'|diff| / max|exact| = {rel:.1e}')

    # -- explain() end to end ----------------------------------------------
    full_maps = num * len(TARGETS) * size[0] * size[1] * 4 / MIB
    _, t_efast, peak_efast = measured(lambda: explain(
        model, image, explainer=ODAM(method='fast',
                                     chunk_size=args.chunk_size),
        targets=TARGETS, score_thr=0.0))
    model.roi_head.test_cfg.max_per_img = args.exact_dets
    _, t_eexact, peak_eexact = measured(lambda: explain(
        model, image, explainer=ODAM(method='exact'), targets=TARGETS,
        score_thr=0.0))
    model.roi_head.test_cfg.max_per_img = num
    t_eexact_n = t_eexact + per_pair_exact * (num - args.exact_dets) * attrs
    print(f'\n## explain(), {len(TARGETS)} targets (5 attributes + '
          'combined)')
    print('| method | detections | s | x inference | '
          'peak RSS above inference MiB |')
    print('|---|---|---|---|---|')
    print(f'| fast | {num} | {t_efast:.2f} | {t_efast / t_inf:.2f} | '
          f'{peak_efast - peak_inf:.0f} (of which the float32 output '
          f'[N, 6, H, W]: {full_maps:.0f}) |')
    print(f'| exact, measured | {args.exact_dets} | {t_eexact:.2f} | '
          f'{t_eexact / t_inf:.2f} | {peak_eexact - peak_inf:.0f} |')
    print(f'| exact, extrapolated | {num} | {t_eexact_n:.1f} | '
          f'{t_eexact_n / t_inf:.1f} | |')
    print(f'explain exact / fast ({num} detections, extrapolated): '
          f'{t_eexact_n / t_efast:.1f}x')


if __name__ == '__main__':
    main()
