"""Evaluate explanation methods over a dataset (ODAM paper, Sec. 4.2).

For each method, the config's detector is wrapped in
:class:`mmdet_odam.evaluation.ExplainedDetector` (its ``test_step`` explains
the batch and computes Deletion / Insertion curves) and evaluated by
:class:`mmdet_odam.evaluation.ExplanationMetric` with ``Runner.test()`` on the
config's test split, so MMEngine's launchers (``--launcher pytorch`` under
``torchrun``) distribute it unchanged. The test pipeline is changed to load GT
masks (after ``Resize``, so GT stays in original pixels).

Outputs in ``--work-dir`` (default ``work_dirs/eval_explanations``): one table
printed (rows: methods; columns: metrics and seconds per explanation),
``explanation_table.json`` (metrics and mean curves per method, settings),
``curves.png`` (Deletion, Insertion and VEA curves of all methods, like the
paper's Fig. 5) and per-method Runner logs in ``<work-dir>/<method>/``.

Example (the evidence run of the README, ~10 CPU minutes)::

    python tools/eval_explanations.py \\
        configs/fcos/fcos_tiny_synthetic-crowd.py \\
        checkpoints/fcos_tiny_synthetic-crowd.pth \\
        --methods odam gradcam gradcampp drise cameras \\
        --num-images 20 --drise-masks 500 --deletion-steps 20
"""
import copy
import json
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/ helpers
from cli_common import (OneLineArgumentParser,  # noqa: E402
                        add_checkpoint_args, add_runner_args,
                        apply_checkpoint_args, parse_runner_args,
                        setup_distributed)

METHODS = {
    'odam': dict(type='ODAM'),
    'gradcam': dict(type='GradCAM'),
    'gradcampp': dict(type='GradCAMPlusPlus'),
    'drise': dict(type='DRISE'),
    'cameras': dict(type='CAMERAS', base=dict(type='ODAM')),
    'bbam': dict(type='BBAM'),
}
# run when --methods is not given (BBAM, ~100x slower, only on request)
DEFAULT_METHODS = ('odam', 'gradcam', 'gradcampp', 'drise', 'cameras')
LABELS = dict(odam='ODAM', gradcam='Grad-CAM', gradcampp='Grad-CAM++',
              drise='D-RISE', cameras='CAMERAS(ODAM)', bbam='BBAM')
# (metric key, column title, format)
COLUMNS = (
    ('pg_box', 'PG(b)%', '{:.1f}'), ('pg_mask', 'PG(m)%', '{:.1f}'),
    ('epg_box', 'enPG(b)%', '{:.1f}'), ('epg_mask', 'enPG(m)%', '{:.1f}'),
    ('compactness', 'Comp.', '{:.2f}'), ('odi_box', 'ODI(b)%', '{:.1f}'),
    ('odi_mask', 'ODI(m)%', '{:.1f}'), ('vea_auc', 'VEA', '{:.3f}'),
    ('deletion_auc', 'Del.%', '{:.1f}'), ('insertion_auc', 'Ins.%', '{:.1f}'),
    ('sec_per_explanation', 's/expl.', '{:.4f}'),
    ('num_objects', '#obj', '{:d}'))


def parse_args(argv=None):
    p = OneLineArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='detector config')
    p.add_argument('checkpoint', help='detector checkpoint')
    p.add_argument('--methods', nargs='+', default=list(DEFAULT_METHODS),
                   choices=list(METHODS), help='explainers to evaluate')
    p.add_argument('--num-images', type=int, default=None,
                   help='first N images of the test split (default: all)')
    p.add_argument('--drise-masks', type=int, default=5000,
                   help='D-RISE masks per image (paper: 5000)')
    p.add_argument('--chunk-size', type=int, default=64,
                   help='detections whose gradients are computed together '
                   '(ODAM, Grad-CAM, Grad-CAM++, CAMERAS; BBAM: masked '
                   'images per forward; bounds memory)')
    p.add_argument('--bbam-steps', type=int, default=300,
                   help='BBAM Adam steps per mask (default 300)')
    p.add_argument('--bbam-mask-size', type=int, default=16,
                   help='BBAM mask cells per side')
    p.add_argument('--drise-batch', type=int, default=32,
                   help='masked images per D-RISE forward')
    p.add_argument('--cameras-scales', type=float, nargs='+',
                   default=[1.0, 1.5, 2.0], help='CAMERAS input scales')
    p.add_argument('--deletion-steps', type=int, default=100,
                   help='Deletion/Insertion steps over the GT-box area '
                   '(paper: 100); 0 skips them')
    p.add_argument('--perturb-batch', type=int, default=32,
                   help='perturbed images per forward')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='detections explained and matched')
    p.add_argument('--match-iou', type=float, default=0.9,
                   help='well-detected IoU (paper: 0.9)')
    p.add_argument('--batch-size', type=int, default=1)
    p.add_argument('--work-dir', default='work_dirs/eval_explanations')
    p.add_argument('--log-interval', type=int, default=5)
    p.add_argument('--num-threads', type=int, default=None,
                   help='torch CPU threads (1 avoids oversubscription on '
                   'a busy machine)')
    add_runner_args(p)
    add_checkpoint_args(p)
    return parse_runner_args(p, argv)


def method_config(name: str, args) -> dict:
    """The explainer config of a method name with the CLI's options."""
    cfg = copy.deepcopy(METHODS[name])
    if name in ('odam', 'gradcam', 'gradcampp'):
        cfg.update(chunk_size=args.chunk_size)
    if name == 'cameras':
        cfg.update(base=dict(cfg['base'], chunk_size=args.chunk_size),
                   scales=tuple(args.cameras_scales))
    if name == 'bbam':
        cfg.update(num_steps=args.bbam_steps, mask_size=args.bbam_mask_size,
                   chunk_size=args.chunk_size)
    if name == 'drise':
        cfg.update(num_masks=args.drise_masks, batch_size=args.drise_batch)
    return cfg


def with_mask_pipeline(pipeline: list) -> list:
    """The test pipeline loading boxes and masks after ``Resize``."""
    steps = [copy.deepcopy(t) for t in pipeline]
    loads = [t for t in steps if 'LoadAnnotations' in str(t.get('type'))]
    steps = [t for t in steps if t not in loads]
    load = loads[0] if loads else dict(type='LoadAnnotations')
    load.update(with_bbox=True, with_mask=True)
    pack = next((i for i, t in enumerate(steps)
                 if 'PackDetInputs' in str(t.get('type'))), len(steps))
    steps.insert(pack, load)
    return steps


def build_method_cfg(base_cfg, name: str, args, stamp: str):
    """A runnable config: the detector wrapped for one method."""
    cfg = copy.deepcopy(base_cfg)
    perturbation = None if args.deletion_steps <= 0 else dict(
        num_steps=args.deletion_steps, batch_size=args.perturb_batch)
    cfg.model = dict(type='ExplainedDetector', detector=cfg.model,
                     explainer=method_config(name, args),
                     targets=('score', ), score_thr=args.score_thr,
                     match_iou=args.match_iou, perturbation=perturbation)
    work_dir = osp.join(args.work_dir, name)
    cfg.work_dir = work_dir
    cfg.load_from = args.checkpoint
    apply_checkpoint_args(cfg, args, args.checkpoint)
    cfg.resume = False
    cfg.experiment_name = f'explain_{name}_{stamp}'
    if cfg.get('visualizer') is not None:
        cfg.visualizer.name = f'visualizer_{name}_{stamp}'
    cfg.default_hooks.logger = dict(type='LoggerHook',
                                    interval=args.log_interval)
    loader = cfg.test_dataloader
    loader.batch_size = args.batch_size
    loader.num_workers = 0
    loader.persistent_workers = False
    loader.dataset.pipeline = with_mask_pipeline(loader.dataset.pipeline)
    if args.num_images:
        loader.dataset.indices = int(args.num_images)
    cfg.test_evaluator = dict(type='ExplanationMetric',
                              match_iou=args.match_iou,
                              out_file=osp.join(work_dir, 'metrics.json'))
    cfg.test_cfg = dict(type='TestLoop')
    setup_distributed(cfg, args.launcher)
    return cfg


def format_table(rows: dict) -> str:
    """Text table, one row per method."""
    header = ['method'] + [title for _, title, _ in COLUMNS]
    lines = [header]
    for name, metrics in rows.items():
        line = [LABELS.get(name, name)]
        for key, _, fmt in COLUMNS:
            value = metrics.get(key, float('nan'))
            try:
                line.append(fmt.format(value))
            except (ValueError, TypeError):
                line.append(str(value))
        lines.append(line)
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    out = ['  '.join(c.rjust(w) if i else c.ljust(w)
                     for i, (c, w) in enumerate(zip(r, widths)))
           for r in lines]
    out.insert(1, '-' * len(out[0]))
    return '\n'.join(out)


def plot_curves(results: dict, path: str) -> None:
    """Deletion, Insertion and VEA curves of all methods in one figure."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    titles = ('(a) Deletion', '(b) Insertion', '(c) VEA')
    for name, res in results.items():
        curves = res.get('curves', {})
        label = LABELS.get(name, name)
        for ax, key in zip(axes[:2], ('deletion', 'insertion')):
            ys = curves.get(key) or []
            if ys:
                ax.plot(range(len(ys)), [100 * y for y in ys], label=label)
        vea = curves.get('vea') or []
        if vea:
            axes[2].plot(curves.get('vea_thresholds'), vea, marker='o',
                         label=label)
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:  # e.g. --deletion-steps 0
            ax.text(0.5, 0.5, 'not computed', ha='center', va='center',
                    transform=ax.transAxes)
    axes[0].set_xlabel('step')
    axes[1].set_xlabel('step')
    axes[0].set_ylabel('average score (% of original)')
    axes[1].set_ylabel('average score (% of original)')
    axes[2].set_xlabel('threshold T')
    axes[2].set_ylabel('IoU with GT mask')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    for path, what in ((args.config, 'config'),
                       (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            sys.exit(f'error: {what} not found: {path}')
    sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))
    import mmdet_odam  # noqa: F401  (registers modules)
    from mmdet_odam.engine import build_runner
    from mmdet_odam.utils import (CheckpointMismatchError,
                                  UnsafeCheckpointError)
    from mmengine.config import Config
    from mmengine.dist import get_rank

    from mmdet_odam.apis import build_explainer
    for name in args.methods:  # option values, before any model is built
        try:
            build_explainer(method_config(name, args))
        except (ValueError, TypeError) as e:
            sys.exit(f'error: --methods {name}: {e}')
    if args.num_threads:
        import torch
        torch.set_num_threads(args.num_threads)
    base_cfg = Config.fromfile(args.config)
    if args.cfg_options:
        base_cfg.merge_from_dict(args.cfg_options)
    stamp = time.strftime('%Y%m%d_%H%M%S')
    results = {}
    for name in args.methods:
        cfg = build_method_cfg(base_cfg, name, args, stamp)
        runner = build_runner(cfg)
        try:
            metrics = runner.test()
        except (CheckpointMismatchError, UnsafeCheckpointError) as e:
            sys.exit(f'error: {e}')
        metric = runner.test_evaluator.metrics[0]
        results[name] = dict(
            metrics={k.split('/', 1)[-1]: v for k, v in metrics.items()},
            curves=metric.curves, explainer=method_config(name, args))
    if get_rank() != 0:
        return results
    table = format_table({n: r['metrics'] for n, r in results.items()})
    print('\nExplanation quality (' + osp.basename(args.config) + ', ' +
          (f'{args.num_images} images' if args.num_images else 'all images')
          + ')\n' + table)
    os.makedirs(args.work_dir, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != 'cfg_options'}
    with open(osp.join(args.work_dir, 'explanation_table.json'), 'w') as f:
        json.dump(dict(settings=settings, table=table, methods=results), f,
                  indent=2, default=str)
    plot_curves(results, osp.join(args.work_dir, 'curves.png'))
    print(f'wrote {osp.join(args.work_dir, "explanation_table.json")} and '
          f'{osp.join(args.work_dir, "curves.png")}')
    return results


if __name__ == '__main__':
    main()
