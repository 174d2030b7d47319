"""ODAM at real-world scale: the R50 COCO configs (random weights: speed and
memory do not depend on them) on an 800x1216 and a 12-megapixel (3024x4032)
photo, 100 detections x (5 attributes + combined), and the tiny FCOS.

Each case runs in a fresh process (so that its peak memory is its own), which
measures, in this order: inference alone (time, peak RSS), then
``explain()`` (time, peak RSS); it prints time / inference and the peak RSS
above inference's own peak, and the cost of rendering every map to the
original image, which :class:`~mmdet_odam.structures.HeatMaps` does only on
demand (one detection at a time in the tools).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/explain_scale.py \\
        [--families fcos retinanet faster_rcnn detr atss gfl rtmdet yolox] \\
        [--sizes 800x1216 \\
        3024x4032] [--num-dets 100] [--repeats 1] [--tiny]

Goals (issue: real-world scale): FCOS, RetinaNet, Faster R-CNN <= 1.5x
inference; DETR on the encoder output <= 0.06 s per map; extra peak memory
<= 1 GB for every family and size; tiny FCOS 30 detections x 5 <= 2x.
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = {
    'fcos': 'configs/fcos/fcos_r50_fpn_gn-head_1x_coco.py',
    'retinanet': 'configs/retinanet/retinanet_r50_fpn_1x_coco.py',
    'faster_rcnn': 'configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    'detr': 'configs/detr/detr_r50_8xb2-150e_coco.py',
    # dense families (tests/test_dense_families.py), not in the default run
    'atss': 'configs/atss/atss_r50_fpn_1x_coco.py',
    'gfl': 'configs/gfl/gfl_r50_fpn_1x_coco.py',
    'rtmdet': 'configs/rtmdet/rtmdet_s_8xb32-300e_coco.py',
    'yolox': 'configs/yolox/yolox_s_8xb8-300e_coco.py',
}
DEFAULT_FAMILIES = ['fcos', 'retinanet', 'faster_rcnn', 'detr']
TINY = ('configs/fcos/fcos_tiny_synthetic-crowd.py',
        'checkpoints/fcos_tiny_synthetic-crowd.pth')
TARGETS = ('score', 'x1', 'y1', 'x2', 'y2', 'combined')


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(family: str, size: str, num_dets: int, repeats: int,
             feature: str) -> dict:
    """One case, in this process (called in a child)."""
    import numpy as np
    import torch
    sys.path.insert(0, ROOT)
    import mmdet_odam  # noqa: F401
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config

    from mmdet_odam.apis import explain, init_explained_detector

    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    h, w = (int(v) for v in size.split('x'))
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8)
    if family == 'tiny':  # trained weights, on the demo image
        model = init_explained_detector(
            osp.join(ROOT, TINY[0]), osp.join(ROOT, TINY[1]),
            cfg_options={'model.test_cfg.max_per_img': num_dets})
        import mmcv
        img = mmcv.imread(osp.join(ROOT, 'demo/crowd.png'))
        targets = TARGETS[:5]
    else:
        torch.manual_seed(0)
        cfg = Config.fromfile(osp.join(ROOT, CONFIGS[family]))
        if 'SyncBN' in cfg.pretty_text:  # RTMDet: one process, plain BN
            cfg = Config.fromstring(
                cfg.pretty_text.replace("'SyncBN'", "'BN'"), '.py')
        cfg.model.backbone.init_cfg = None
        test_cfg = cfg.model.test_cfg
        test_cfg = test_cfg.rcnn if 'rcnn' in test_cfg else test_cfg
        test_cfg.max_per_img = num_dets
        if 'score_thr' in test_cfg:
            test_cfg.score_thr = 0.0
        if family == 'yolox':  # YOLOX caps its detections in the NMS
            test_cfg.nms.max_num = num_dets
        model = init_detector(cfg, None, device='cpu').eval()
        if family == 'yolox':
            # random weights on 0-255 inputs push exp(size) to inf; speed does
            # not depend on the weights, so start the sizes at one stride
            with torch.no_grad():
                for conv in model.bbox_head.multi_level_conv_reg:
                    conv.weight.mul_(1e-3)
                    conv.bias.zero_()
        targets = TARGETS
    explainer = dict(type='ODAM', feature=feature)

    def timed(fn):
        best = float('inf')
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - start)
        return best, out

    with torch.no_grad():
        inference_detector(model, img)  # warm-up (allocator, caches)
    base_peak = peak_rss_mb()
    t_inf, det = timed(lambda: inference_detector(model, img))
    inf_peak = peak_rss_mb()
    t_exp, out = timed(lambda: explain(model, img, explainer=explainer,
                                       targets=targets, score_thr=0.0))
    exp_peak = peak_rss_mb()
    heatmaps = out.pred_instances.heatmaps
    start = time.perf_counter()
    for i in range(len(heatmaps)):  # what the tools do: one at a time
        heatmaps.render([i])
    t_render = time.perf_counter() - start
    num = len(out.pred_instances)
    return dict(family=family, size=size, feature=feature, detections=num,
                maps=num * len(targets), inference_s=t_inf,
                explain_s=t_exp, ratio=t_exp / t_inf,
                s_per_map=t_exp / max(num * (len(targets) - (
                    'combined' in targets)), 1),
                render_all_s=t_render, stored_mib=heatmaps.nbytes / 2 ** 20,
                inference_peak_mib=inf_peak, base_peak_mib=base_peak,
                extra_peak_mib=exp_peak - inf_peak,
                num_detections_inference=len(det.pred_instances))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--families', nargs='+', default=DEFAULT_FAMILIES,
                   choices=list(CONFIGS))
    p.add_argument('--sizes', nargs='+', default=['800x1216', '3024x4032'])
    p.add_argument('--num-dets', type=int, default=100)
    p.add_argument('--repeats', type=int, default=1)
    p.add_argument('--detr-feature', default='neck',
                   help="DETR's explained feature ('neck', 'backbone' or "
                   "'encoder' where available)")
    p.add_argument('--tiny', action='store_true',
                   help='also the tiny FCOS, 30 detections x 5 on '
                   'demo/crowd.png (256x256)')
    p.add_argument('--case', help=argparse.SUPPRESS)  # child process
    args = p.parse_args()
    if args.case:
        family, size, feature = args.case.split(':')
        print(json.dumps(run_case(family, size, args.num_dets, args.repeats,
                                  feature)))
        return
    cases = [(f, s, args.detr_feature if f == 'detr' else 'neck')
             for f in args.families for s in args.sizes]
    if args.tiny:
        cases.append(('tiny', '256x256', 'neck'))
    print('| family | image | feature | dets x maps | inference s | explain s '
          '| x inference | s / map | render all s | stored MiB | extra peak '
          'MiB |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for family, size, feature in cases:
        num = 30 if family == 'tiny' else args.num_dets
        cmd = [sys.executable, osp.abspath(__file__), '--case',
               f'{family}:{size}:{feature}', '--num-dets', str(num),
               '--repeats', str(args.repeats)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f'| {family} | {size} | {feature} | failed: '
                  f'{res.stderr.strip().splitlines()[-1][:120]} |')
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"| {family} | {size} | {feature} | {r['detections']} x "
              f"{r['maps'] // max(r['detections'], 1)} | "
              f"{r['inference_s']:.2f} | {r['explain_s']:.2f} | "
              f"{r['ratio']:.2f} | {r['s_per_map']:.4f} | "
              f"{r['render_all_s']:.2f} | {r['stored_mib']:.1f} | "
              f"{r['extra_peak_mib']:.0f} |", flush=True)


if __name__ == '__main__':
    main()
