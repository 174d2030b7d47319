"""Seconds per ODAM map of DETR on its three features, in one process.

DETR-R50 (random weights: no pretrained weights can be downloaded here; speed
does not depend on them) on a random image kept at ``--size``, ``--num-dets``
detections x 5 attributes, exact path (one autograd call per detection and
attribute). For each feature (``'encoder'``: the transformer encoder's output
memory, gradients through the decoder only; ``'neck'``: the ChannelMapper
output, through encoder and decoder; ``'backbone'``: ResNet C5, through the
neck too) it prints:

* explain s: one ``explain()`` call, and its ratio to inference;
* gradient s / map: the adapter's ``exact_gradients`` time per map inside that
  call, and (explain - inference) / maps;
* extra peak RSS: the process's peak RSS during the call minus the peak of a
  plain inference (peaks reset between phases via ``/proc/self/clear_refs``);
  it includes the (N, 5, H, W) float32 maps that ``explain()`` returns.

With ``--batched`` it also compares, on the encoder memory, the per-pair
vector-Jacobian loop with ``torch.autograd.grad(..., is_grads_batched=True)``
(one vmapped backward for ``--vjp-batch`` one-hot rows at a time), and checks
that both give the same gradients.

Usage::

    python benchmarks/detr_encoder_speed.py --threads 1 --num-dets 10 \
        --size 800 1216 --batched
"""
import argparse
import ctypes
import gc
import os.path as osp
import resource
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
from mmdet_odam.apis.explain import build_test_pipeline  # noqa: E402
from mmdet_odam.explainers import ATTRIBUTES, ODAM  # noqa: E402
from mmdet_odam.explainers.adapters import DETRAdapter  # noqa: E402

CONFIG = 'configs/detr/detr_r50_8xb2-150e_coco.py'
DEVICE = 'cpu'  # set by --device


def now() -> float:
    """Wall clock once the device's queued work is done (GPUs run
    asynchronously)."""
    if DEVICE.startswith('cuda'):
        torch.cuda.synchronize()
    return time.perf_counter()


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS (Linux >= 4.0); False if not possible.

    Freed heap is handed back to the OS first (glibc ``malloc_trim``), so
    that every phase starts from the memory still in use.
    """
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak RSS since the last reset (VmHWM), else since the start, in MB."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_model(config: str, size, num_dets: int, device: str = 'cpu'):
    """Random-weight DETR keeping max ``num_dets`` queries; the test
    pipeline's Resize keeps an image of ``size`` (h, w) as it is."""
    torch.manual_seed(0)
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.max_per_img = num_dets
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (size[1], size[0])
    return init_detector(cfg, None, device=device).eval()


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = now()
        fn()
        times.append(now() - start)
    return statistics.median(times)


def explain_feature(model, img, feature: str, chunk_size: int) -> dict:
    """One explain() of all detections x 5 attributes on ``feature``, with
    the time spent in the adapter's exact_gradients and the peak RSS."""
    spent = [0.0]
    original = DETRAdapter.exact_gradients

    def timed_gradients(self, *args, **kwargs):
        start = now()
        out = original(self, *args, **kwargs)
        spent[0] += now() - start
        return out

    explainer = ODAM(feature=feature, method='exact', chunk_size=chunk_size)
    DETRAdapter.exact_gradients = timed_gradients
    try:
        reset_peak_rss()
        start = now()
        out = explain(model, img, explainer=explainer, targets=ATTRIBUTES,
                      score_thr=0.0)
        total = now() - start
        peak = peak_rss_mb()
    finally:
        DETRAdapter.exact_gradients = original
    maps = len(out.pred_instances) * len(ATTRIBUTES)
    del out
    return dict(total=total, grads=spent[0], maps=maps, peak=peak)


def loop_vs_batched(model, img, vjp_batch: int) -> dict:
    """Encoder-memory gradients of all pairs: per-pair loop vs one
    ``is_grads_batched`` backward per ``vjp_batch`` pairs."""
    data = build_test_pipeline(model, img)(dict(img=img, img_id=0))
    batch = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
        False)
    adapter = DETRAdapter(model, 'encoder')
    with torch.enable_grad():
        state = adapter.forward(batch['inputs'], batch['data_samples'])
        ys = adapter.candidate_scalars(state, 0).flatten()  # (P, )
        num = len(ys)

        def loop():
            return torch.stack([
                torch.autograd.grad(y, state.activations,
                                    retain_graph=True)[0][0] for y in ys])

        def batched():
            eye = torch.eye(num, dtype=ys.dtype, device=ys.device)
            parts = []
            for start in range(0, num, vjp_batch):
                grad, = torch.autograd.grad(
                    ys, state.activations, eye[start:start + vjp_batch],
                    retain_graph=True, is_grads_batched=True)
                parts.append(grad[:, 0])
            return torch.cat(parts)

        # warm-up of both on the first pairs (allocator, vmap set-up)
        head = ys[:min(num, 5)]
        torch.autograd.grad(head[0], state.activations, retain_graph=True)
        torch.autograd.grad(head, state.activations,
                            torch.eye(len(head), dtype=ys.dtype,
                                      device=ys.device),
                            retain_graph=True, is_grads_batched=True)
        reset_peak_rss()
        start = now()
        ref = loop()
        t_loop = now() - start
        peak_loop = peak_rss_mb()
        reset_peak_rss()
        start = now()
        got = batched()
        t_batched = now() - start
        peak_batched = peak_rss_mb()
    diff = float((got - ref).abs().max() / ref.abs().max().clamp(min=1e-30))
    return dict(pairs=num, loop=t_loop, batched=t_batched, diff=diff,
                peak_loop=peak_loop, peak_batched=peak_batched)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default=CONFIG)
    p.add_argument('--size', type=int, nargs=2, default=(800, 1216),
                   metavar=('H', 'W'))
    p.add_argument('--num-dets', type=int, default=10)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--device', default='cpu',
                   help="e.g. 'cuda:0' to see whether batching pays there")
    p.add_argument('--repeats', type=int, default=3,
                   help='timed inference runs (median)')
    p.add_argument('--chunk-size', type=int, default=ODAM().chunk_size,
                   help="ODAM's detections per chunk")
    p.add_argument('--features', nargs='+',
                   default=('encoder', 'neck', 'backbone'))
    p.add_argument('--batched', action='store_true',
                   help='also compare is_grads_batched with the loop on the '
                   'encoder memory')
    p.add_argument('--vjp-batch', type=int, default=0,
                   help='pairs per batched backward (0: all of them)')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    global DEVICE
    DEVICE = args.device

    model = build_model(args.config, args.size, args.num_dets, args.device)
    img = np.random.default_rng(0).integers(
        0, 255, (*args.size, 3), dtype=np.uint8)
    can_reset = reset_peak_rss()
    t_inf = timed(lambda: inference_detector(model, img), args.repeats)
    reset_peak_rss()
    inference_detector(model, img)
    peak_inf = peak_rss_mb()
    print(f'# DETR {osp.basename(args.config)}, random weights, '
          f'{args.size[0]}x{args.size[1]}, {args.device}, '
          f'{args.threads} thread(s), '
          f'{args.num_dets} detections x {len(ATTRIBUTES)} attributes, '
          f'exact path, chunk_size {args.chunk_size}')
    print(f'inference: {t_inf:.3f} s, peak RSS {peak_inf:.0f} MB'
          + ('' if can_reset else ' (peaks not resettable: process maxima)'))
    # warm-up: first-call costs (pipeline, allocator) out of the first row
    explain_feature(model, img, 'encoder', args.chunk_size)
    print('| feature | explain s | x inference | gradient s / map | '
          '(explain - inference) s / map | extra peak RSS MB |')
    print('|---|---|---|---|---|---|')
    rows = {}
    for feature in args.features:
        r = explain_feature(model, img, feature, args.chunk_size)
        rows[feature] = r
        print(f"| {feature} | {r['total']:.2f} | {r['total'] / t_inf:.2f} | "
              f"{r['grads'] / r['maps']:.3f} | "
              f"{(r['total'] - t_inf) / r['maps']:.3f} | "
              f"{r['peak'] - peak_inf:.0f} |", flush=True)
    if 'encoder' in rows:
        enc = rows['encoder']['grads'] / rows['encoder']['maps']
        for feature, r in rows.items():
            if feature != 'encoder':
                print(f"gradient time per map, {feature} / encoder: "
                      f"{r['grads'] / r['maps'] / enc:.1f}x")
    if args.batched:
        r = loop_vs_batched(model, img, args.vjp_batch or 10 ** 9)
        n = r['pairs']
        print(f"\nencoder memory, {n} pairs: loop {r['loop'] / n:.3f} s / map"
              f" (peak RSS {r['peak_loop'] - peak_inf:+.0f} MB vs "
              f"inference's), is_grads_batched {r['batched'] / n:.3f} s / map "
              f"(batch {min(n, args.vjp_batch or n)}, peak RSS "
              f"{r['peak_batched'] - peak_inf:+.0f} MB); batched / loop "
              f"{r['batched'] / r['loop']:.2f}; max relative difference "
              f"{r['diff']:.1e}")


if __name__ == '__main__':
    main()
