"""Evidence on a real COCO detector and real photographs (README section "A real
detector on real photos").

The detector is TF's model zoo SSD-MobileNetV2 converted by ``make
real-model`` (cached in data/real_model/, with scikit-image's sample photos
and frames of OpenCV's pedestrian video ``vtest.avi``). Parts:

* ``figures``: ODAM vs Grad-CAM vs D-RISE for several people of a video frame,
  the per-attribute ODAM maps of one detection, Odam-NMS vs NMS on a crowded
  frame -> docs/real_ssd_*.jpg.
* ``quality``: explanation quality measurable without ground truth, for person
  detections (score >= 0.5) of the first ``--frames`` frames: heat inside the
  detection's own box (energy Pointing Game on the predicted box), ODI with
  the other detections' boxes as "other objects", Deletion / Insertion AUC of
  the tracked score (the most salient pixels removed to black / inserted onto
  black, up to the detection's box area in ``--steps`` equal steps).
* ``nms``: person detections (score >= 0.3) per frame and how many kept
  person pairs overlap (IoU > 0.5), with NMS at IoU 0.5 / 0.6 and Odam-NMS.
* ``speed``: explaining every detection (all 6 maps) of one frame, fast vs
  exact path: seconds and peak RSS, each in a fresh process.
* ``sanity``: the model-parameter randomisation test (paper App. A.5.1,
  Adebayo et al. 2018): the trained model's person detections (score >= 0.5)
  of the first ``--frames`` frames explained by the trained model and, for the
  same box and class, by the same network with randomly initialised weights
  (its best candidate there, ``MatchedCandidates``): Spearman rank
  correlation of the two 'score' maps (scipy, on a 1/4-size grid), the share
  of each map's heat inside the box, the candidates' scores ->
  docs/real_ssd_sanity.jpg.

Usage::

    make real-model
    OMP_NUM_THREADS=1 python benchmarks/real_ssd.py figures quality nms speed \
        sanity
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
CACHE = osp.join(ROOT, 'data', 'real_model')
CONFIG = osp.join(ROOT, 'configs/ssd/ssd_mobilenetv2_tf-coco.py')
ODAM_NMS_CONFIG = osp.join(ROOT,
                           'configs/ssd/ssd_mobilenetv2_tf-coco_odam-nms.py')
CHECKPOINT = osp.join(CACHE, 'ssd_mobilenetv2_tf-coco.pth')
DOCS = osp.join(ROOT, 'docs')
PERSON = 0  # MMDetection's COCO class index
METHODS = {
    'ODAM': dict(type='ODAM'),
    'Grad-CAM': dict(type='GradCAM'),
    'D-RISE': dict(type='DRISE', num_masks=300, batch_size=16),
}


def frames(n=None):
    folder = osp.join(CACHE, 'frames')
    names = sorted(os.listdir(folder))[:n]
    return [osp.join(folder, f) for f in names]


def load(config=CONFIG):
    import mmdet_odam  # noqa: F401
    from mmdet_odam.apis import init_explained_detector
    return init_explained_detector(config, CHECKPOINT)


def persons(pred, thr):
    keep = (pred.labels == PERSON) & (pred.scores >= thr)
    return keep.nonzero()[:, 0].tolist()


def save_jpg(path, image, rgb=False):
    """Write ``image`` (BGR, or RGB with ``rgb``) as a JPEG, atomically."""
    import cv2
    bgr = image[..., ::-1] if rgb else image

    from mmdet_odam.apis.output_files import atomic_open
    ok, data = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    with atomic_open(path) as f:
        f.write(data.tobytes())
    print(f'wrote {osp.relpath(path, ROOT)} ({len(data) // 1024} KB)')


def crop(img, box, margin=0.6, size=(150, 220)):
    """The detection's box with a margin, resized to ``size`` (w, h)."""
    import cv2
    h, w = img.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin * 0.5
    x1, y1 = int(max(0, x1 - mx)), int(max(0, y1 - my))
    x2, y2 = int(min(w, x2 + mx)), int(min(h, y2 + my))
    return cv2.resize(img[y1:y2, x1:x2], size)


# -- figures ----------------------------------------------------------------------
def figures(args):
    import mmcv

    from mmdet_odam.apis import explain
    from mmdet_odam.visualization.heatmap_overlay import (draw_box,
                                                          make_gallery,
                                                          overlay_heatmap)
    from mmdet.apis import inference_detector
    model = load()
    path = frames()[3]  # vtest_0300: a crowded frame
    img = mmcv.imread(path)
    outs = {name: explain(model, img, explainer=cfg, targets=('combined', ),
                          score_thr=0.5)
            for name, cfg in METHODS.items()}
    pred = outs['ODAM'].pred_instances
    dets = persons(pred, 0.5)[:4]
    tiles, titles = [], []
    for name, out in outs.items():
        maps = out.pred_instances.heatmaps
        for d in dets:
            box = pred.bboxes[d].tolist()
            tile = overlay_heatmap(img, maps[d, 0].numpy(), box=box)
            tiles.append(crop(tile, box))
            titles.append(f'{name} #{d} {float(pred.scores[d]):.2f}')
    save_jpg(osp.join(DOCS, 'real_ssd_methods.jpg'),
             make_gallery(tiles, ncols=len(dets), titles=titles), rgb=True)

    targets = ('score', 'x1', 'y1', 'x2', 'y2', 'combined')
    out = explain(model, img, targets=targets, score_thr=0.5)
    d = dets[0]
    box = out.pred_instances.bboxes[d].tolist()
    maps = out.pred_instances.heatmaps[d].to_tensor()[0].numpy()
    tiles = [crop(overlay_heatmap(img, m, box=box), box, margin=1.0,
                  size=(180, 240)) for m in maps]
    save_jpg(osp.join(DOCS, 'real_ssd_attributes.jpg'),
             make_gallery(tiles, ncols=6, titles=list(targets)), rgb=True)

    path = frames()[6]
    img = mmcv.imread(path)
    tiles, titles = [], []
    for title, config in (('NMS (IoU 0.6)', CONFIG),
                          ('Odam-NMS', ODAM_NMS_CONFIG)):
        pred = inference_detector(load(config), img).pred_instances
        canvas = img.copy()
        keep = persons(pred, 0.3)
        for i in keep:
            draw_box(canvas, pred.bboxes[i].tolist(), (0, 255, 0),
                     f'{float(pred.scores[i]):.2f}')
        tiles.append(canvas)
        titles.append(f'{title}: {len(keep)} persons >= 0.3')
    save_jpg(osp.join(DOCS, 'real_ssd_nms.jpg'),
             make_gallery(tiles, ncols=2, titles=titles, tile_size=576))


# -- quality ----------------------------------------------------------------------
def quality(args):
    import mmcv
    import torch

    from mmdet_odam.apis import explain
    from mmdet_odam.evaluation.explanation_metrics import (
        box_region, curve_auc, energy_pointing_game,
        object_discrimination_index, perturbation_curve, tracked_score,
        union_regions)
    from mmdet.apis import inference_detector
    model = load()
    rows = {name: dict(own_box=[], odi=[], deletion=[], insertion=[])
            for name in METHODS}
    seconds = {name: 0.0 for name in METHODS}
    for path in frames(args.frames):
        img = mmcv.imread(path)
        shape = img.shape[:2]
        image = torch.from_numpy(img).permute(2, 0, 1)
        for name, cfg in METHODS.items():
            start = time.perf_counter()
            out = explain(model, img, explainer=cfg, targets=('score', ),
                          score_thr=0.3)
            seconds[name] += time.perf_counter() - start
            pred = out.pred_instances
            regions = [box_region(b.tolist(), shape) for b in pred.bboxes]
            for d in persons(pred, 0.5):
                heat = pred.heatmaps[d, 0]
                others = [r for i, r in enumerate(regions) if i != d]
                rows[name]['own_box'].append(
                    energy_pointing_game(heat, regions[d]))
                rows[name]['odi'].append(object_discrimination_index(
                    heat, regions[d], union_regions(others, shape)))

                def score_fn(batch, d=d):
                    results = inference_detector(
                        model, [b.permute(1, 2, 0).numpy() for b in batch])
                    return torch.tensor([tracked_score(
                        r.pred_instances.bboxes, r.pred_instances.scores,
                        r.pred_instances.labels, pred.bboxes[d], PERSON)
                        for r in results])

                # the box's own area in ``--steps`` steps (as over a GT box)
                step = int(np.ceil(float(regions[d].sum()) / args.steps))
                for mode in ('deletion', 'insertion'):
                    curve = perturbation_curve(
                        image, heat, score_fn, mode, args.steps, step,
                        torch.zeros(3, 1, 1, dtype=image.dtype),
                        batch_size=args.steps + 1)
                    rows[name][mode].append(curve_auc(curve))
    table = {name: {k: float(np.nanmean(v)) for k, v in r.items()} |
             dict(detections=len(r['odi']),
                  seconds_per_image=seconds[name] / args.frames)
             for name, r in rows.items()}
    print(json.dumps(table, indent=1))
    print('| method | heat in own box (higher better) | ODI (lower better) '
          '| Deletion AUC (lower better) | Insertion AUC (higher better) '
          '| s / image |')
    print('|---|---|---|---|---|---|')
    for name, r in table.items():
        print(f"| {name} | {r['own_box']:.3f} | {r['odi']:.3f} | "
              f"{r['deletion']:.3f} | {r['insertion']:.3f} | "
              f"{r['seconds_per_image']:.1f} |")
    return table


# -- nms ----------------------------------------------------------------------------
def nms(args):
    import mmcv
    import torch

    from mmdet.apis import inference_detector
    from mmdet.structures.bbox import bbox_overlaps
    variants = {}
    for title, config, iou in (('NMS IoU 0.5', CONFIG, 0.5),
                               ('NMS IoU 0.6 (graph)', CONFIG, 0.6),
                               ('Odam-NMS (0.5, 0.8, 0.2)', ODAM_NMS_CONFIG,
                                0.6)):
        model = load(config)
        model.bbox_head.test_cfg.nms.iou_threshold = iou
        variants[title] = model
    print('| post-processing | persons >= 0.3 (8 frames) | kept person pairs '
          'with IoU > 0.5 | s / frame |')
    print('|---|---|---|---|')
    for title, model in variants.items():
        count = pairs = 0
        start = time.perf_counter()
        for path in frames():
            pred = inference_detector(model, mmcv.imread(path)).pred_instances
            keep = persons(pred, 0.3)
            count += len(keep)
            if len(keep) > 1:
                iou = bbox_overlaps(pred.bboxes[keep], pred.bboxes[keep])
                pairs += int(torch.triu(iou > 0.5, 1).sum())
        per_frame = (time.perf_counter() - start) / len(frames())
        print(f'| {title} | {count} | {pairs} | {per_frame:.2f} |')


# -- speed -------------------------------------------------------------------------
def speed_one(method):
    import mmcv

    from mmdet_odam.apis import explain
    from mmdet_odam.explainers import ODAM
    model = load()
    img = mmcv.imread(frames()[3])
    explain(model, img, explainer=ODAM(method=method), score_thr=0.5)  # warm
    start = time.perf_counter()
    out = explain(model, img, explainer=ODAM(method=method), score_thr=0.0)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(method=method, detections=len(out.pred_instances),
                          seconds=seconds, peak_rss_mb=rss)))


def speed(args):
    print('| path | detections | maps | seconds | peak RSS (MB) |')
    print('|---|---|---|---|---|')
    for method in ('fast', 'exact'):
        run = subprocess.run([sys.executable, __file__, '--speed-one', method],
                             capture_output=True, text=True, check=True)
        r = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"| {method} | {r['detections']} | {r['detections'] * 6} | "
              f"{r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |")


# -- sanity ------------------------------------------------------------------------
def sanity(args):
    import cv2
    import mmcv
    import torch
    from mmdet.apis import init_detector
    from scipy.stats import spearmanr

    from mmdet_odam.apis import explain
    from mmdet_odam.apis.export import box_energy_fraction
    from mmdet_odam.explainers import MatchedCandidates
    from mmdet_odam.visualization.heatmap_overlay import (make_gallery,
                                                          overlay_heatmap)
    trained = load()
    torch.manual_seed(0)
    randomised = init_detector(CONFIG, None, device='cpu', palette='random')
    rows, tiles, titles = [], [], []
    for number, path in enumerate(frames(args.frames)):
        img = mmcv.imread(path)
        pred = explain(trained, img, targets=('score', ),
                       score_thr=0.5).pred_instances
        keep = persons(pred, 0.5)
        if not keep:
            continue
        boxes = pred.bboxes[keep]
        rand = explain(randomised, img, targets=('score', ), candidates=(
            MatchedCandidates(boxes.numpy(), PERSON))).pred_instances
        own = len(persons(explain(randomised, img, targets=('score', ),
                                  score_thr=0.5).pred_instances, 0.5))
        h, w = img.shape[:2]
        for k, d in enumerate(keep):
            a = pred.heatmaps[d, 0].numpy()
            b = rand.heatmaps[k, 0].numpy()
            small = [cv2.resize(m, (w // 4, h // 4),
                                interpolation=cv2.INTER_AREA) for m in (a, b)]
            rho = spearmanr(small[0].ravel(), small[1].ravel()).statistic
            box = boxes[k].numpy()
            rows.append(dict(rho=float(np.nan_to_num(rho)),
                             trained_in_box=box_energy_fraction(a, box),
                             random_in_box=box_energy_fraction(b, box),
                             trained_score=float(pred.scores[d]),
                             random_score=float(rand.scores[k]),
                             random_persons=own))
            if number == 0 and k < 3:
                for name, m in (('trained', a), ('random weights', b)):
                    tiles.append(crop(overlay_heatmap(img, m, box=box.tolist()),
                                      box.tolist()))
                    titles.append(f'#{d} {name}')
    if tiles:
        save_jpg(osp.join(DOCS, 'real_ssd_sanity.jpg'),
                 make_gallery(tiles, ncols=2, titles=titles), rgb=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    print(f'{len(rows)} person detections of {args.frames} frames')
    print('| model | score of the candidate | heat in the box | Spearman rho '
          'with the trained map | persons >= 0.5 per frame (own) |')
    print('|---|---|---|---|---|')
    print(f"| trained | {mean['trained_score']:.3f} | "
          f"{mean['trained_in_box']:.3f} | 1 | - |")
    print(f"| random weights | {mean['random_score']:.3f} | "
          f"{mean['random_in_box']:.3f} | {mean['rho']:.3f} | "
          f"{mean['random_persons']:.1f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('parts', nargs='*', default=[],
                   help='figures, quality, nms, speed and / or sanity')
    p.add_argument('--frames', type=int, default=3,
                   help='video frames for the quality part')
    p.add_argument('--steps', type=int, default=10,
                   help='Deletion / Insertion steps')
    p.add_argument('--speed-one', choices=['fast', 'exact'],
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    unknown = set(args.parts) - {'figures', 'quality', 'nms', 'speed',
                                 'sanity'}
    if unknown:
        sys.exit(f'error: unknown parts {sorted(unknown)}')
    if not osp.isfile(CHECKPOINT) or not osp.isdir(osp.join(CACHE, 'frames')):
        sys.exit(f'error: {CACHE} lacks the converted model or the video '
                 'frames: run `make real-model`')
    if args.speed_one:
        return speed_one(args.speed_one)
    for part in args.parts:
        globals()[part](args)


if __name__ == '__main__':
    main()
