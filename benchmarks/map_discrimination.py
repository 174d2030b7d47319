"""Do the candidates' ODAM maps tell overlapping people apart?

Odam-NMS keeps a high-IoU candidate only when its map differs from the kept
one's (cosine < T_l). This measures how well the maps Odam-NMS compares
separate the two kinds of high-IoU pairs, on the synthetic crowd val split:

* duplicates: two candidates whose best-matching GT (IoU > 0.5) is the same
  object;
* different objects: two candidates matching different GT objects.

Pairs are all same-image candidate pairs (score > 0.05) with IoU > 0.5. It
prints the ROC AUC (probability that a different-object pair has a lower
cosine than a duplicate pair; 0.5 = no information) and, per T_l, the share
of each kind that Odam-NMS would keep apart. Maps, grid and thresholds come
from the tiny Odam-NMS config, computed as ``benchmarks/crowd_nms.py`` does.

Usage::

    python benchmarks/map_discrimination.py \\
        checkpoints/fcos_tiny_synthetic-crowd.pth \\
        checkpoints/fcos_tiny_odam-train_synthetic-crowd.pth --num-images 100
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from pycocotools.coco import COCO

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path[:0] = [ROOT, osp.join(ROOT, 'tools')]
from cli_common import load_script  # noqa: E402
from mmdet_odam.evaluation.explanation_metrics import box_iou  # noqa: E402


def roc_auc(positives: torch.Tensor, negatives: torch.Tensor) -> float:
    """P(positive < negative) + P(tie) / 2 over all (positive, negative)
    pairs, counted with a binary search in the sorted negatives."""
    negatives = negatives.double().sort().values
    positives = positives.double()
    below = torch.searchsorted(negatives, positives, right=False)
    upto = torch.searchsorted(negatives, positives, right=True)
    wins = (len(negatives) - upto) + 0.5 * (upto - below)
    return float(wins.sum() / (len(positives) * len(negatives)))


def xyxy_boxes(anns: list) -> torch.Tensor:
    """(N, 4) x1, y1, x2, y2 boxes of COCO annotations (x, y, w, h)."""
    boxes = torch.tensor([a['bbox'] for a in anns], dtype=torch.float32)
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def pair_cosines(cands, coco: COCO, min_score: float):
    """Cosine of every high-IoU candidate pair and whether it spans two
    different GT objects."""
    # CrowdHuman odgt ids are the image file stems
    by_stem = {osp.splitext(osp.basename(i['file_name']))[0]: i['id']
               for i in coco.dataset['images']}
    cosines, different = [], []
    for cand in cands:
        stem = osp.splitext(osp.basename(str(cand['img_id'])))[0]
        anns = [a for a in coco.loadAnns(coco.getAnnIds(
            imgIds=by_stem[stem])) if not a.get('iscrowd')]
        keep = cand['scores'] > min_score
        boxes, maps = cand['bboxes'][keep], cand['maps'][keep].float()
        if len(anns) < 2 or len(boxes) < 2:
            continue
        best, owner = box_iou(boxes, xyxy_boxes(anns)).max(dim=1)
        first, second = torch.triu_indices(len(boxes), len(boxes), 1)
        sel = (box_iou(boxes, boxes)[first, second] > 0.5) & \
            (best[first] > 0.5) & (best[second] > 0.5)
        first, second = first[sel], second[sel]
        unit = maps.flatten(1)
        unit = unit / unit.norm(dim=1, keepdim=True).clamp(min=1e-12)
        cosines.append((unit[first] * unit[second]).sum(1))
        different.append(owner[first] != owner[second])
    return torch.cat(cosines), torch.cat(different)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('checkpoints', nargs='+')
    p.add_argument('--score-target', choices=('logit', 'score'),
                   default=None, help='explained scalar of the maps '
                   '(default: the Odam-NMS config\'s, the class logit)')
    p.add_argument('--data-root', default='data/synthetic_crowd')
    p.add_argument('--num-images', type=int, default=100)
    p.add_argument('--min-score', type=float, default=0.05)
    p.add_argument('--threads', type=int, default=2)
    args = p.parse_args()
    for path in args.checkpoints:
        if not osp.isfile(path):
            sys.exit(f'error: checkpoint not found: {path}')
    torch.set_num_threads(args.threads)
    crowd_nms = load_script('benchmarks/crowd_nms.py')
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(ROOT, crowd_nms.CONFIG))
    dataset = crowd_nms.build_dataset(cfg, args.data_root)
    mapper = crowd_nms.load_odam_nms(
        osp.join(ROOT, crowd_nms.ODAM_CONFIG), None)[1].mapper
    if args.score_target is not None:
        mapper.score_target = args.score_target
    coco = COCO(osp.join(args.data_root, 'annotations', 'instances_val.json'))
    indices = list(range(min(args.num_images, len(dataset))))
    t_lows = (0.1, 0.2, 0.3, 0.4)
    print(f'\n{len(indices)} val images, candidate pairs with IoU > 0.5')
    print('| checkpoint | pairs | different-object pairs | ROC AUC | ' +
          ' | '.join(f'kept apart at T_l {t} (different / duplicates)'
                     for t in t_lows) + ' |')
    print('|---' * (4 + len(t_lows)) + '|')
    for path in args.checkpoints:
        model = crowd_nms.build_model(cfg, path)
        cands, _ = crowd_nms.collect_candidates(model, dataset, indices, 4,
                                                mapper)
        cosines, different = pair_cosines(cands, coco, args.min_score)
        kept = ' | '.join(
            f'{100 * (cosines[different] < t).float().mean():.1f}% / '
            f'{100 * (cosines[~different] < t).float().mean():.1f}%'
            for t in t_lows)
        print(f'| {osp.basename(path)} | {len(cosines)} | '
              f'{int(different.sum())} | '
              f'{roc_auc(cosines[different], cosines[~different]):.3f} | '
              f'{kept} |')


if __name__ == '__main__':
    main()
