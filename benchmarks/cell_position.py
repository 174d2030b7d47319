"""Where do feature cells belong in the image? ODAM maps with cell_position
'grid' (plain resize, the default) vs 'receptive_field' (cell i of stride s
on pixel i * s, the geometric centre of its receptive field).

For every GT object of the synthetic val split that the tiny FCOS detects
with IoU > 0.9, the ODAM score map of its best-matched detection is scored
with the Pointing Game and energy Pointing Game against its box and its mask,
split by object height (<= 64 px: mostly FPN level P3, stride 8; taller:
P4/P5). People are left-right symmetric on average, so the mean horizontal
offset of a map's energy centroid (and of its peak) from the box centre
measures the horizontal placement bias; vertical offsets are not comparable
(heads carry more evidence than feet).

Usage::

    python tools/generate_synthetic_crowd.py --out-dir data/synthetic_crowd
    python benchmarks/cell_position.py \\
        --checkpoint checkpoints/fcos_tiny_synthetic-crowd.pth --num-images 200

``--feature backbone`` explains at the backbone stages instead of the FPN;
``--config``/``--checkpoint`` take another tiny FCOS (e.g. the P2 variant).
"""
import argparse
import os.path as osp
import sys

import torch
from pycocotools.coco import COCO

sys.path.insert(0, osp.join(osp.dirname(__file__), '..'))
import mmdet_odam  # noqa: E402,F401
from mmdet.apis import init_detector  # noqa: E402

from mmdet_odam.apis import explain  # noqa: E402
from mmdet_odam.evaluation.explanation_metrics import (  # noqa: E402
    argmax_pixel, box_region, energy_pointing_game, match_well_detected,
    pointing_game)
from mmdet_odam.explainers.heatmap import CELL_POSITIONS  # noqa: E402

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from map_discrimination import xyxy_boxes  # noqa: E402

CONFIG = 'configs/fcos/fcos_tiny_synthetic-crowd.py'
SMALL = 64  # px: objects up to this height are mostly detected on P3


def horizontal_offsets(heatmap: torch.Tensor, box: torch.Tensor) -> tuple:
    """(energy centroid x, peak x) minus the box centre x, in pixels."""
    xs = torch.arange(heatmap.shape[-1], dtype=heatmap.dtype) + 0.5
    centre = float(box[0] + box[2]) / 2
    energy = heatmap.sum(0)
    centroid = float((energy * xs).sum() / energy.sum().clamp(min=1e-12))
    peak = argmax_pixel(heatmap)
    return centroid - centre, (peak[1] + 0.5 - centre) if peak else 0.0


def object_scores(model, coco: COCO, image_dir: str, image_ids, position: str,
                  feature: str = 'neck') -> torch.Tensor:
    """Rows (height, PG box, enPG box, PG mask, enPG mask, dx centroid,
    dx peak) for every well-detected object."""
    rows = []
    explainer = dict(type='ODAM', cell_position=position, feature=feature)
    for img_id in image_ids:
        info = coco.loadImgs(img_id)[0]
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id))
                if not a.get('iscrowd', 0)]
        if not anns:
            continue
        gt = xyxy_boxes(anns)
        out = explain(model, osp.join(image_dir, info['file_name']),
                      explainer=explainer, targets=('score', ),
                      score_thr=0.3)
        pred = out.pred_instances
        match = match_well_detected(gt, pred.bboxes, iou_thr=0.9)
        for g, det in enumerate(match.tolist()):
            if det < 0:
                continue
            heatmap = pred.heatmaps[det, 0]
            box = box_region(gt[g], heatmap.shape)
            mask = torch.from_numpy(coco.annToMask(anns[g])).bool()
            rows.append([float(gt[g, 3] - gt[g, 1]),
                         pointing_game(heatmap, box),
                         energy_pointing_game(heatmap, box),
                         pointing_game(heatmap, mask),
                         energy_pointing_game(heatmap, mask),
                         *horizontal_offsets(heatmap, gt[g])])
    return torch.tensor(rows)


def summary(rows: torch.Tensor) -> str:
    pct = 100 * rows[:, 1:5].mean(0)
    return (f'| {len(rows)} | ' + ' | '.join(f'{v:.1f}' for v in pct) +
            f' | {rows[:, 5].mean():+.2f} | {rows[:, 6].mean():+.2f} |')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', default=CONFIG)
    p.add_argument('--checkpoint',
                   default='checkpoints/fcos_tiny_synthetic-crowd.pth')
    p.add_argument('--feature', default='neck',
                   help="ODAM's feature maps ('neck' or 'backbone')")
    p.add_argument('--data-root', default='data/synthetic_crowd')
    p.add_argument('--num-images', type=int, default=200)
    p.add_argument('--threads', type=int, default=2)
    args = p.parse_args()
    ann_file = osp.join(args.data_root, 'annotations', 'instances_val.json')
    for path in (args.config, args.checkpoint, ann_file):
        if not osp.isfile(path):
            sys.exit(f'error: not found: {path}')
    torch.set_num_threads(args.threads)
    model = init_detector(args.config, args.checkpoint, device='cpu')
    coco = COCO(ann_file)
    image_ids = sorted(coco.getImgIds())[:args.num_images]
    image_dir = osp.join(args.data_root, 'images')
    print(f'\n{len(image_ids)} val images, ODAM score maps ({args.feature} '
          'features) of the objects detected with IoU > 0.9')
    print('| cell_position | objects (height) | count | PG box % | '
          'enPG box % | PG mask % | enPG mask % | dx centroid px | '
          'dx peak px |')
    print('|---|---|---|---|---|---|---|---|---|')
    for position in CELL_POSITIONS:
        rows = object_scores(model, coco, image_dir, image_ids, position,
                             args.feature)
        small = rows[:, 0] <= SMALL
        for name, sel in (('all', slice(None)), (f'<= {SMALL} px', small),
                          (f'> {SMALL} px', ~small)):
            print(f'| {position} | {name} ' + summary(rows[sel]))


if __name__ == '__main__':
    main()
