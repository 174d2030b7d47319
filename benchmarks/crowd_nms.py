"""NMS vs Soft-NMS vs Odam-NMS on CrowdHuman-format crowd data (ODAM Sec. 4.3).

Evidence for the paper's Tables 5 / 7 / 8 / 9 and Fig. 9 on the synthetic crowd
val split (CrowdHuman odgt format) with the tiny FCOS, in one process:

1. the detector runs ONCE per image; its pre-NMS candidates (boxes, scores,
   labels after the head's own ``score_thr`` / ``nms_pre`` and the FCOS
   centerness factor, i.e. exactly what MMDetection would pass to NMS) and
   their ODAM maps (``CandidateMapper.dense``: class-logit ODAM, adaptive
   Gaussian Phi, common grid) are collected;
2. each post-processing is a pure function of those candidates: mmcv NMS
   (T_iou 0.5), mmcv Soft-NMS (Gaussian, sigma 0.5, final score 0.05) and
   ``batched_odam_nms`` (T_iou 0.5, T_h 0.8, T_l 0.2), each followed by the
   head's ``max_per_img``;
3. every result is evaluated with ``CrowdHumanRecallMetric``: AP50, MR^-2, JI
   (MMDetection's CrowdHumanMetric) and the crowd / sparse / all recall at the
   best-JI score threshold (App. A.4.2);
4. the threshold sweep of App. A.4.1 (T_l x T_h; classical NMS is T_l 0,
   T_h 1) re-runs only step 2/3 per pair and is drawn like Fig. 9;
5. consistency: on the first ``--check-images`` images the detector also runs
   end to end through the shipped configs (``model.predict``: NMS config and
   the Odam-NMS config, i.e. the integrated ``OdamNMS`` with lazy maps); its
   detections are compared with the offline ones and its wall time is the
   "s/img (integrated)" reported next to the offline breakdown.

The Odam-NMS settings (grid, Phi, score target, correlation, T_iou / T_h / T_l)
are read from ``--odam-config`` (default the tiny Odam-NMS config), so the
offline maps are the ones the integrated module computes.

Times are per image on this machine (CPU, ``--threads``): ``detector`` =
backbone + neck + head + candidate decoding, ``maps`` = batched ODAM maps of
ALL candidates (the sweep needs them; the integrated module computes only the
maps it needs), ``nms`` = the post-processing alone; "s/img" is the offline
pipeline as the paper's Table 5 (detector + maps where needed + nms).

Usage::

    python tools/generate_synthetic_crowd.py --out-dir data/synthetic_crowd
    python benchmarks/crowd_nms.py \\
        --baseline checkpoints/fcos_tiny_synthetic-crowd.pth \\
        [--odam-train ODAM_TRAIN_CKPT] \\
        --data-root data/synthetic_crowd --num-images 200 \\
        --out-dir work_dirs/crowd_nms

Writes ``crowd_nms.json``, ``crowd_nms.md`` and ``crowd_nms_sweep.png``.
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

sys.path.insert(0, osp.join(osp.dirname(__file__), '..'))
import mmdet_odam  # noqa: E402,F401  (registers modules, torch.load fix)
from mmcv.ops import batched_nms  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402

from mmdet.registry import DATASETS, METRICS, MODELS  # noqa: E402
from mmdet_odam.evaluation.crowd_recall import SUBSETS  # noqa: E402
from mmdet_odam.explainers.adapters.dense import \
    dense_candidates  # noqa: E402
from mmdet_odam.models.candidate_maps import CandidateMapper  # noqa: E402
from mmdet_odam.models.odam_nms import (batched_odam_nms,  # noqa: E402
                                        build_odam_nms)

CONFIG = 'configs/fcos/fcos_tiny_synthetic-crowdhuman.py'
ODAM_CONFIG = 'configs/fcos/fcos_tiny_odam-nms_synthetic-crowdhuman.py'
SOFT_CONFIG = 'configs/fcos/fcos_tiny_soft-nms_synthetic-crowdhuman.py'
NMS_CFG = dict(type='nms', iou_threshold=0.5)
SOFT_NMS_CFG = dict(type='soft_nms', iou_threshold=0.5, sigma=0.5,
                    min_score=0.05, method='gaussian')

Candidates = Dict[str, object]  # one image: see collect_candidates


def load_odam_nms(odam_config: str, grid_short_edge: Optional[int]):
    """``batched_odam_nms`` and the ``OdamNMS`` of the config."""
    odam_cfg = dict(Config.fromfile(odam_config).model.test_cfg.odam_nms)
    if grid_short_edge is not None:
        odam_cfg['grid_short_edge'] = grid_short_edge
    return batched_odam_nms, build_odam_nms(odam_cfg)


# -----------------------------------------------------------------------------
# 1. candidates (detector once per image)
# -----------------------------------------------------------------------------
def build_model(cfg: Config, checkpoint: str) -> torch.nn.Module:
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None  # no pretrained download
    model = MODELS.build(model_cfg)
    load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    return model.eval()


def build_dataset(cfg: Config, data_root: str):
    ds_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    ds_cfg.data_root = data_root
    ds_cfg.extra_ann_file = osp.join(data_root, 'annotations',
                                     'id_hw_val.json')
    return DATASETS.build(ds_cfg)


def collect_candidates(model: torch.nn.Module, dataset,
                       indices: Sequence[int], batch_size: int,
                       mapper: CandidateMapper
                       ) -> Tuple[List[Candidates], Dict[str, float]]:
    """Pre-NMS candidates and their ODAM maps, one dict per image.

    Args:
        model: Single-stage detector with a conv-only dense head.
        dataset: CrowdHuman-format dataset (test pipeline).
        indices (Sequence[int]): Images to run, in odgt order.
        batch_size (int): Images per forward.
        mapper (CandidateMapper): Computes the candidates' ODAM maps.

    Returns:
        tuple: Per image ``img_id``, ``ori_shape``, ``bboxes`` (N, 4) in
        original-image pixels, ``scores`` (N, ) (class score x centerness),
        ``labels`` (N, ), ``maps`` (N, H, W) float16; and total
        seconds ``{'detector', 'maps'}``.
    """
    head = model.bbox_head
    out, times = [], dict(detector=0.0, maps=0.0)
    for start in range(0, len(indices), batch_size):
        batch = pseudo_collate(
            [dataset[i] for i in indices[start:start + batch_size]])
        t0 = time.perf_counter()
        with torch.no_grad():
            data = model.data_preprocessor(batch, False)
            samples = data['data_samples']
            metas = [s.metainfo for s in samples]
            feats = model.extract_feat(data['inputs'])
            # boxes stay in input pixels for the maps
            cands, norm_stats = dense_candidates(head, feats, metas)
        t1 = time.perf_counter()
        with torch.enable_grad():  # dY/dA by autograd on detached leaves
            maps = mapper.dense(head, feats, norm_stats, cands,
                                [m['img_shape'] for m in metas])
        t2 = time.perf_counter()
        times['detector'] += t1 - t0
        times['maps'] += t2 - t1
        for meta, cand, cmap in zip(metas, cands, maps):
            scale = cand.bboxes.new_tensor(meta['scale_factor']).repeat(2)
            out.append(dict(
                img_id=meta['img_id'], ori_shape=meta['ori_shape'],
                bboxes=cand.bboxes.detach() / scale,
                scores=cand.scores.detach(), labels=cand.labels,
                maps=cmap.detach().half()))
    return out, times


# -----------------------------------------------------------------------------
# 2. post-processing (pure functions of the candidates)
# -----------------------------------------------------------------------------
def mmcv_nms(cand: Candidates, nms_cfg: dict,
             max_per_img: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """MMDetection's dense-head NMS step: ``batched_nms`` then top-k.

    Returns:
        tuple: boxes (K, 4) and scores (K, ) (Soft-NMS: decayed scores).
    """
    if len(cand['scores']) == 0:
        return cand['bboxes'], cand['scores']
    dets, keep = batched_nms(cand['bboxes'], cand['scores'], cand['labels'],
                             nms_cfg)
    return dets[:max_per_img, :4], dets[:max_per_img, -1]


def odam_nms_post(cand: Candidates, odam_fn: Callable, max_per_img: int,
                  iou_threshold: float, t_high: float, t_low: float,
                  correlation: str = 'cosine'
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``batched_odam_nms`` on the candidates then top-k by score."""
    if len(cand['scores']) == 0:
        return cand['bboxes'], cand['scores']
    keep = odam_fn(cand['bboxes'], cand['scores'], cand['labels'],
                   cand['maps'].float(), iou_threshold, t_high, t_low,
                   correlation, max_num=max_per_img)
    keep = torch.as_tensor(keep, dtype=torch.long)
    keep = keep[cand['scores'][keep].argsort(descending=True,
                                             stable=True)][:max_per_img]
    return cand['bboxes'][keep], cand['scores'][keep]


def run_post(cands: List[Candidates], post: Callable
             ) -> Tuple[List[dict], float]:
    """Apply ``post(cand) -> (boxes, scores)`` to every image.

    Returns:
        tuple: data samples for ``CrowdHumanMetric.process`` and the total
        post-processing seconds.
    """
    samples, seconds = [], 0.0
    for cand in cands:
        t0 = time.perf_counter()
        boxes, scores = post(cand)
        seconds += time.perf_counter() - t0
        samples.append(dict(
            img_id=cand['img_id'], ori_shape=cand['ori_shape'],
            pred_instances=dict(bboxes=boxes, scores=scores)))
    return samples, seconds


def predict_integrated(config: str, checkpoint: str, dataset,
                       indices: Sequence[int], batch_size: int
                       ) -> Tuple[List[Tuple[torch.Tensor, torch.Tensor]],
                                  float]:
    """``model.predict`` of a shipped config (the integrated post-processing).

    Returns:
        tuple: per image (boxes (K, 4), scores (K, )) in original pixels, and
        the total seconds (preprocessing excluded).
    """
    cfg = Config.fromfile(config)
    model = build_model(cfg, checkpoint)
    out, seconds = [], 0.0
    with torch.no_grad():  # warm-up (lazy initialisations), not timed
        model(**model.data_preprocessor(
            pseudo_collate([dataset[indices[0]]]), False), mode='predict')
    for start in range(0, len(indices), batch_size):
        batch = pseudo_collate(
            [dataset[i] for i in indices[start:start + batch_size]])
        with torch.no_grad():
            data = model.data_preprocessor(batch, False)
            t0 = time.perf_counter()
            results = model(**data, mode='predict')
            seconds += time.perf_counter() - t0
        out += [(r.pred_instances.bboxes, r.pred_instances.scores)
                for r in results]
    return out, seconds


def same_detections(a: Sequence[Tuple[torch.Tensor, torch.Tensor]],
                    b: Sequence[dict], atol: float = 1e-3) -> int:
    """Number of images whose boxes and scores agree (same order)."""
    same = 0
    for (boxes, scores), sample in zip(a, b):
        pred = sample['pred_instances']
        if boxes.shape == pred['bboxes'].shape and torch.allclose(
                boxes, pred['bboxes'], atol=atol) and torch.allclose(
                    scores, pred['scores'], atol=1e-5):
            same += 1
    return same


# -----------------------------------------------------------------------------
# 3. evaluation
# -----------------------------------------------------------------------------
def evaluate(ann_file: str, samples: List[dict]) -> Dict[str, float]:
    """CrowdHumanRecallMetric on predictions of the first len(samples) images.

    The metric pairs results with the odgt lines in order (``zip``), so a
    prefix of the val split is evaluated against the matching prefix.
    """
    metric = METRICS.build(
        dict(type='CrowdHumanRecallMetric', ann_file=ann_file,
             metric=['AP', 'MR', 'JI'], num_ji_process=1))
    metric.process({}, samples)
    return dict(metric.compute_metrics(metric.results))


# -----------------------------------------------------------------------------
# reporting
# -----------------------------------------------------------------------------
def pct(value: float) -> str:
    return f'{100 * value:.1f}'


def main_table(rows: List[dict]) -> str:
    """Markdown table like the paper's Tables 5 / 8 (+ recall of Table 9)."""
    head = ('| Checkpoint | Method | T_h | T_l | AP50 | MR | JI | Recall '
            '| Conf. | Recall all | Recall sparse | Recall crowd | s/img |')
    lines = [head, '|' + '---|' * (head.count('|') - 1)]
    for r in rows:
        m = r['metrics']
        lines.append(
            f"| {r['checkpoint']} | {r['method']} | {r.get('t_high', '-')} | "
            f"{r.get('t_low', '-')} | {pct(m['mAP'])} | {pct(m['mMR'])} | "
            f"{pct(m['JI'])} | {pct(m['max_recall'])} | "
            f"{m['best_ji_score_thr']:.1f} | {pct(m['recall_all'])} | "
            f"{pct(m['recall_sparse'])} | {pct(m['recall_crowd'])} | "
            f"{r['s_per_img']:.4f} |")
    return '\n'.join(lines)


def recall_table(rows: List[dict]) -> str:
    """Markdown table like the paper's Tables 7 / 9: counts and %."""
    cols = [f"{r['checkpoint']} {r['method']}" for r in rows]
    lines = ['| | GT | ' + ' | '.join(cols) + ' |',
             '|---|---|' + '---|' * len(cols)]
    for name, title in zip(SUBSETS, ('Total', 'Sparse', 'Crowd')):
        gt = rows[0]['metrics'][f'num_gt_{name}']
        cells = []
        for r in rows:
            m = r['metrics']
            hit = m[f'num_recalled_{name}']
            cells.append(f'{hit} ({100 * hit / max(gt, 1):.1f}%)')
        lines.append(f'| {title} | {gt} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot_sweep(sweeps: Dict[str, dict], t_lows: Sequence[float],
               t_highs: Sequence[float], nms_ref: Dict[str, dict],
               path: str) -> None:
    """Fig. 9: heat maps of AP50 / MR / JI / crowd recall over (T_l, T_h).

    One row per checkpoint; the star marks classical NMS (T_l 0, T_h 1) and
    the title gives mmcv NMS's value for reference.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    keys = [('mAP', 'AP50 (higher better)', 'viridis'),
            ('mMR', 'MR$^{-2}$ (lower better)', 'viridis_r'),
            ('JI', 'JI (higher better)', 'viridis'),
            ('recall_crowd', 'crowd recall @best-JI conf.', 'viridis')]
    names = list(sweeps)
    fig, axes = plt.subplots(len(names), len(keys),
                             figsize=(4.2 * len(keys), 3.6 * len(names)),
                             squeeze=False)
    for row, name in enumerate(names):
        grid = sweeps[name]
        for col, (key, title, cmap) in enumerate(keys):
            ax = axes[row][col]
            vals = np.array([[100 * grid[(tl, th)][key] for tl in t_lows]
                             for th in t_highs])
            im = ax.imshow(vals, origin='lower', cmap=cmap, aspect='auto')
            for i in range(len(t_highs)):
                for j in range(len(t_lows)):
                    bright = im.norm(vals[i, j]) > 0.6 if cmap == 'viridis' \
                        else im.norm(vals[i, j]) < 0.4
                    ax.text(j, i, f'{vals[i, j]:.1f}', ha='center',
                            va='center', fontsize=7,
                            color='k' if bright else 'w')
            if 0.0 in t_lows and 1.0 in t_highs:  # classical NMS
                ax.plot(t_lows.index(0.0) - 0.3, t_highs.index(1.0) + 0.3,
                        marker='*', color='k', markersize=11,
                        markeredgecolor='w')
            ax.set_xticks(range(len(t_lows)), [f'{t:g}' for t in t_lows])
            ax.set_yticks(range(len(t_highs)), [f'{t:g}' for t in t_highs])
            ax.set_xlabel('$T^l$')
            ax.set_ylabel('$T^h$')
            ref = 100 * nms_ref[name][key]
            ax.set_title(f'{name}: {title}\nNMS: {ref:.1f}', fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_floats(text: str) -> List[float]:
    return [float(t) for t in text.split(',') if t.strip()]


def parse_args():
    parser = argparse.ArgumentParser(
        description='NMS vs Soft-NMS vs Odam-NMS on CrowdHuman-format data')
    parser.add_argument('--config', default=CONFIG,
                        help='plain (NMS) CrowdHuman-format dense config')
    parser.add_argument('--odam-config', default=ODAM_CONFIG,
                        help='config whose test_cfg.odam_nms gives the '
                        'Odam-NMS settings (and the integrated check)')
    parser.add_argument('--soft-config', default=SOFT_CONFIG,
                        help='Soft-NMS config (integrated check)')
    parser.add_argument('--baseline',
                        default='checkpoints/fcos_tiny_synthetic-crowd.pth',
                        help='checkpoint trained without Odam-Train')
    parser.add_argument('--odam-train', help='checkpoint trained with '
                        'Odam-Train (optional)')
    parser.add_argument('--data-root', default='data/synthetic_crowd')
    parser.add_argument('--num-images', type=int, default=None,
                        help='first N val images (default: all)')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--grid-short-edge', type=int, default=None,
                        help='override the Odam-NMS config\'s map grid')
    parser.add_argument('--t-lows', type=parse_floats,
                        default=[0.0, 0.1, 0.2, 0.3, 0.4],
                        help='comma-separated T_l values of the sweep')
    parser.add_argument('--t-highs', type=parse_floats,
                        default=[0.6, 0.7, 0.8, 0.9, 1.0],
                        help='comma-separated T_h values of the sweep')
    parser.add_argument('--no-sweep', action='store_true')
    parser.add_argument('--check-images', type=int, default=16,
                        help='images run end to end through the configs to '
                        'compare with the offline pipeline (0: skip)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch CPU threads (1: stable timings on a '
                        'shared machine)')
    parser.add_argument('--out-dir', default='work_dirs/crowd_nms')
    return parser.parse_args()


def main():
    args = parse_args()
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    # the metric's logs (JI curve, recall table) stay quiet: one per setting
    MMLogger.get_instance('crowd_nms', log_level='WARNING')
    init_default_scope('mmdet')
    ann_file = osp.join(args.data_root, 'annotations', 'annotation_val.odgt')
    if not osp.isfile(ann_file):
        sys.exit(f'error: {ann_file} not found; run python '
                 'tools/generate_synthetic_crowd.py --out-dir '
                 f'{args.data_root}')
    os.makedirs(args.out_dir, exist_ok=True)
    cfg = Config.fromfile(args.config)
    max_per_img = int(cfg.model.test_cfg.get('max_per_img', 100))
    dataset = build_dataset(cfg, args.data_root)
    num = len(dataset) if args.num_images is None else min(
        args.num_images, len(dataset))
    indices = list(range(num))
    odam_fn, odam = load_odam_nms(args.odam_config, args.grid_short_edge)
    odam_settings = dict(
        iou_threshold=odam.iou_threshold, t_high=odam.t_high,
        t_low=odam.t_low, correlation=odam.correlation)

    ckpts = [('baseline', args.baseline)]
    if args.odam_train:
        ckpts.append(('odam-train', args.odam_train))
    rows, sweeps, nms_ref, stats, checks = [], {}, {}, {}, {}
    for name, path in ckpts:
        if not osp.isfile(path):
            sys.exit(f'error: checkpoint not found: {path}')
        model = build_model(cfg, path)
        cands, times = collect_candidates(
            model, dataset, indices, args.batch_size, odam.mapper)
        det_s, map_s = times['detector'] / num, times['maps'] / num
        counts = [len(c['scores']) for c in cands]
        stats[name] = dict(candidates_mean=float(np.mean(counts)),
                           candidates_max=int(np.max(counts)),
                           detector_s_per_img=det_s, maps_s_per_img=map_s)
        print(f'[{name}] {num} images: {np.mean(counts):.0f} candidates/img '
              f'(max {max(counts)}); detector {det_s:.4f} s/img, ODAM maps '
              f'of all candidates {map_s:.4f} s/img')
        methods = [
            ('NMS', {}, lambda c: mmcv_nms(c, NMS_CFG, max_per_img), False,
             args.config),
            ('Soft-NMS', {},
             lambda c: mmcv_nms(c, SOFT_NMS_CFG, max_per_img), False,
             args.soft_config),
            ('Odam-NMS', dict(t_high=odam.t_high, t_low=odam.t_low),
             lambda c: odam_nms_post(c, odam_fn, max_per_img,
                                     **odam_settings), True,
             args.odam_config),
        ]
        for method, extra, post, needs_maps, method_cfg in methods:
            samples, nms_s = run_post(cands, post)
            metrics = evaluate(ann_file, samples)
            total = det_s + (map_s if needs_maps else 0.0) + nms_s / num
            row = dict(checkpoint=name, method=method, **extra,
                       metrics=metrics, nms_s_per_img=nms_s / num,
                       s_per_img=total)
            if args.check_images > 0:
                k = min(args.check_images, num)
                preds, seconds = predict_integrated(
                    method_cfg, path, dataset, indices[:k], args.batch_size)
                row['integrated_s_per_img'] = seconds / k
                row['integrated_same_images'] = same_detections(
                    preds, samples[:k])
                row['integrated_checked_images'] = k
            rows.append(row)
            if method == 'NMS':
                nms_ref[name] = metrics
            check = '' if args.check_images <= 0 else (
                f"; integrated {row['integrated_s_per_img']:.3f} s/img, "
                f"same dets on {row['integrated_same_images']}/"
                f"{row['integrated_checked_images']} images")
            print(f'[{name}] {method:9s} AP50 {pct(metrics["mAP"])}  MR '
                  f'{pct(metrics["mMR"])}  JI {pct(metrics["JI"])}  '
                  f'crowd recall {pct(metrics["recall_crowd"])}  '
                  f'(nms {nms_s / num * 1000:.1f} ms/img{check})')
        if not args.no_sweep:
            t0 = time.perf_counter()
            grid = {}
            for t_low in args.t_lows:
                for t_high in args.t_highs:
                    settings = dict(odam_settings, t_high=t_high,
                                    t_low=t_low)
                    samples, _ = run_post(cands, lambda c: odam_nms_post(
                        c, odam_fn, max_per_img, **settings))
                    grid[(t_low, t_high)] = evaluate(ann_file, samples)
            sweeps[name] = grid
            print(f'[{name}] sweep of {len(grid)} (T_l, T_h) pairs: '
                  f'{time.perf_counter() - t0:.1f} s')
        del cands

    elapsed = time.perf_counter() - t_start
    text = report(args, num, rows, sweeps, nms_ref, stats, odam, elapsed)
    print('\n' + text)
    with open(osp.join(args.out_dir, 'crowd_nms.md'), 'w') as f:
        f.write(text)
    result = dict(
        config=args.config, odam_config=args.odam_config,
        data_root=args.data_root, num_images=num, checkpoints=dict(ckpts),
        threads=args.threads, nms=NMS_CFG, soft_nms=SOFT_NMS_CFG,
        odam_nms=odam_settings, grid_short_edge=odam.mapper.grid_short_edge, max_per_img=max_per_img, stats=stats,
        rows=rows,
        sweep={name: [dict(t_low=tl, t_high=th, **m)
                      for (tl, th), m in grid.items()]
               for name, grid in sweeps.items()},
        total_seconds=elapsed)
    with open(osp.join(args.out_dir, 'crowd_nms.json'), 'w') as f:
        json.dump(result, f, indent=1)
    print(f'wrote {args.out_dir}/crowd_nms.{{json,md}}'
          + (' and crowd_nms_sweep.png' if sweeps else ''))


def report(args, num: int, rows: List[dict], sweeps: Dict[str, dict],
           nms_ref: Dict[str, dict], stats: Dict[str, dict], odam,
           elapsed: float) -> str:
    """Markdown report; also draws the sweep figure."""
    grid_txt = (f', maps on a grid with short edge '
                f'{odam.mapper.grid_short_edge} ({odam.correlation} '
                'correlation)')
    md = [
        '# Crowd NMS benchmark\n',
        f'Synthetic crowd val (CrowdHuman format), first {num} images; '
        f'detector `{args.config}`{grid_txt}. AP50 / MR^-2 / JI / recall in '
        '%; "Recall" = with every detection; "Conf." = score threshold of '
        'the best JI, at which the recall columns are counted (IoU >= 0.5, '
        'greedy one-to-one). s/img: offline pipeline on this machine (CPU, '
        f'{args.threads} thread(s), shared: timings are indicative).\n',
        main_table(rows),
        '\nRecall of crowd / sparse GT at the best-JI threshold '
        '(as Tables 7 / 9):\n',
        recall_table(rows),
        '\nPer checkpoint: candidates per image (mean / max), detector and '
        'all-candidate ODAM-map time:\n']
    for name, st in stats.items():
        md.append(f"- {name}: {st['candidates_mean']:.0f} / "
                  f"{st['candidates_max']} candidates, detector "
                  f"{st['detector_s_per_img']:.4f} s/img, maps "
                  f"{st['maps_s_per_img']:.4f} s/img")
    if any('integrated_s_per_img' in r for r in rows):
        md.append('\nIntegrated check (shipped configs through '
                  '`model.predict`, first images):\n')
        md.append('| Checkpoint | Method | s/img | identical detections |')
        md.append('|---|---|---|---|')
        for r in rows:
            md.append(f"| {r['checkpoint']} | {r['method']} | "
                      f"{r['integrated_s_per_img']:.4f} | "
                      f"{r['integrated_same_images']}/"
                      f"{r['integrated_checked_images']} |")
    if sweeps:
        md.append('\nOdam-NMS threshold sweep (App. A.4.1), cells '
                  '"JI / MR / AP50"; T_l 0, T_h 1 = classical NMS:')
        for name, grid in sweeps.items():
            md.append(f'\n{name} (rows T_h, columns T_l):\n')
            md.append('| T_h \\ T_l | ' + ' | '.join(
                f'{t:g}' for t in args.t_lows) + ' |')
            md.append('|---|' + '---|' * len(args.t_lows))
            for t_high in args.t_highs:
                md.append(f'| {t_high:g} | ' + ' | '.join(
                    '{} / {} / {}'.format(
                        pct(grid[(tl, t_high)]['JI']),
                        pct(grid[(tl, t_high)]['mMR']),
                        pct(grid[(tl, t_high)]['mAP']))
                    for tl in args.t_lows) + ' |')
        png = osp.join(args.out_dir, 'crowd_nms_sweep.png')
        plot_sweep(sweeps, list(args.t_lows), list(args.t_highs), nms_ref,
                   png)
        md.append(f'\n![sweep]({osp.basename(png)})')
    md.append(f'\nTotal benchmark time: {elapsed:.0f} s.')
    return '\n'.join(md) + '\n'


if __name__ == '__main__':
    main()
