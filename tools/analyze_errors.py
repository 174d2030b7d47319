"""Why did my detector fail? Sort its errors into types and explain each.

Example (the README's evidence, the bundled tiny FCOS on the synthetic val
split)::

    python tools/generate_synthetic_crowd.py --out-dir data/synthetic_crowd
    python tools/analyze_errors.py configs/fcos/fcos_tiny_synthetic-crowd.py \\
        checkpoints/fcos_tiny_synthetic-crowd.pth --out-dir outputs/errors

CONFIG is any MMDetection config with a COCO-style test (or ``--split val``)
dataset; its images and annotations are read through MMDetection's dataset
(``--data-root`` re-bases every path, as in ``tools/test.py``). For each of
the first ``--num-images`` images the detector's detections scoring at least
``--score-thr`` are matched to the ground truth and sorted into TIDE-like
error types (correct, localization, classification, both, duplicate,
background, missed; rules in ``mmdet_odam/evaluation/error_analysis.py``)
and each error is explained with the ODAM maps that answer why (see
``mmdet_odam/apis/error_explanations.py``). Writes into ``--out-dir`` a
self-contained HTML report (``index.html``, opens offline), ``errors.json``
(counts overall and per class, every card's numbers) and ``summary.md`` (the
table, also printed); see ``mmdet_odam/visualization/report.py``.

Files are written atomically and only over this tool's own earlier files; a
file of someone else's at an output path stops it before the model is built
(``--overwrite`` to replace it). Errors print one ``error:`` line (exit 1;
2 for malformed arguments).
"""
import argparse
import math
import os.path as osp
import sys
import warnings
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/ helpers
from cli_common import (REPO_ROOT, OneLineArgumentParser,  # noqa: E402
                        add_cfg_options, add_checkpoint_args, fail,
                        find_config, load_explained_detector, load_script,
                        resolve_device)

sys.path.insert(0, REPO_ROOT)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = OneLineArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='detector config file (or mmdet::...)')
    p.add_argument('checkpoint', help='checkpoint file matching the config')
    p.add_argument('--out-dir', required=True, help='report folder')
    p.add_argument('--data-root', default=None,
                   help="dataset root replacing the config's data_root")
    p.add_argument('--split', choices=('test', 'val'), default='test',
                   help='the config dataloader to read (default: test)')
    p.add_argument('--num-images', type=int, default=None,
                   help='first N images (default: all)')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='detections analysed (lower ones are candidates for '
                   'missed objects)')
    p.add_argument('--fg-iou', type=float, default=0.5,
                   help='TIDE foreground IoU t_f')
    p.add_argument('--bg-iou', type=float, default=0.1,
                   help='TIDE background IoU t_b')
    p.add_argument('--max-cards', type=int, default=50,
                   help='cards per error type in the report (counts cover '
                   'all errors)')
    p.add_argument('--cmap', default='jet', help='matplotlib colormap')
    p.add_argument('--device', default=None,
                   help='torch device (default: cuda:0 if available)')
    p.add_argument('--num-threads', type=int, default=None,
                   help='torch CPU threads')
    p.add_argument('--overwrite', action='store_true',
                   help='replace files in --out-dir not written by this '
                   'tool')
    add_checkpoint_args(p)
    add_cfg_options(p)
    return p.parse_args(argv)


def check_options(args: argparse.Namespace) -> None:
    """Cheap checks (no model, no data).

    Raises:
        ValueError: The first problem, in one line.
    """
    if args.num_images is not None and args.num_images < 1:
        raise ValueError(f'--num-images must be >= 1, got {args.num_images}')
    if not math.isfinite(args.score_thr) or not 0 <= args.score_thr <= 1:
        raise ValueError(f'--score-thr must be in [0, 1], got '
                         f'{args.score_thr}')
    if not 0 <= args.bg_iou <= args.fg_iou <= 1:
        raise ValueError('need 0 <= --bg-iou <= --fg-iou <= 1, got '
                         f'{args.bg_iou} and {args.fg_iou}')
    if args.max_cards < 0:
        raise ValueError(f'--max-cards must be >= 0, got {args.max_cards}')
    if osp.exists(args.out_dir) and not osp.isdir(args.out_dir):
        raise ValueError(f'--out-dir {args.out_dir} is not a directory')
    if args.data_root is not None and not osp.isdir(args.data_root):
        raise ValueError(f'--data-root {args.data_root} is not a directory')
    from mmdet_odam.visualization import check_colormap
    check_colormap(args.cmap)


def build_dataset(cfg, split: str):
    """The config's ``<split>_dataloader.dataset``, built by MMDetection."""
    import copy

    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    loader = cfg.get(f'{split}_dataloader', None)
    if not loader or 'dataset' not in loader:
        raise ValueError(f'the config has no {split}_dataloader.dataset')
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return DATASETS.build(copy.deepcopy(loader.dataset))


def ground_truth(info: dict):
    """(boxes (M, 4), labels (M, ), ignore (M, )) of a data info."""
    import numpy as np
    instances = info.get('instances', [])
    boxes = np.array([i['bbox'] for i in instances], np.float32).reshape(-1,
                                                                         4)
    labels = np.array([i['bbox_label'] for i in instances], np.int64)
    ignore = np.array([bool(i.get('ignore_flag', 0)) for i in instances],
                      bool)
    return boxes, labels, ignore


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        config = find_config(args.config)
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(
                f'checkpoint file not found: {args.checkpoint}')
        check_options(args)
        device = resolve_device(args.device)
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e))

    from tqdm import tqdm

    import mmdet_odam  # noqa: F401  (registers modules)
    from mmdet_odam.apis.error_explanations import explain_image_errors
    from mmdet_odam.apis.export import read_image
    from mmdet_odam.apis.output_files import OutputConflictError
    from mmdet_odam.evaluation.error_analysis import ErrorCounts
    from mmdet_odam.visualization.report import ErrorReport
    from mmengine.config import Config

    if args.num_threads:
        import torch
        torch.set_num_threads(args.num_threads)
    try:
        cfg = Config.fromfile(config)
    except Exception as e:  # syntax errors, missing bases
        return fail(f'cannot read config {args.config}: '
                     f'{type(e).__name__}: {e}')
    if args.data_root is not None:
        load_script('tools/test.py').override_data_root(cfg, args.data_root)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    report = ErrorReport(args.out_dir, cmap=args.cmap,
                         max_cards=args.max_cards,
                         protected=[config, args.checkpoint],
                         overwrite=args.overwrite)
    try:
        report.check()
    except OutputConflictError as e:
        hint = '; use --overwrite or another --out-dir' if e.overridable \
            else ''
        return fail(f'{e}{hint}')
    try:
        dataset = build_dataset(cfg, args.split)
    except (ValueError, FileNotFoundError, OSError) as e:
        return fail(f'cannot read the {args.split} dataset: {e}')
    except Exception as e:  # dataset classes raise many kinds
        return fail(f'cannot build the {args.split} dataset: '
                     f'{type(e).__name__}: {e}')
    class_names = tuple(dataset.metainfo.get('classes', ()))
    report.class_names = class_names
    model, error = load_explained_detector(cfg, args, device)
    if error:
        return fail(error)
    counts = ErrorCounts(class_names=class_names)
    num = len(dataset) if args.num_images is None else min(
        args.num_images, len(dataset))
    warnings.filterwarnings('ignore', message='torch.meshgrid')
    explainer = dict(type='ODAM')
    for index in tqdm(range(num), desc='analyse', unit='img'):
        info = dataset.get_data_info(index)
        try:
            image = read_image(info['img_path'])
        except (OSError, ValueError) as e:
            return fail(str(e))
        boxes, labels, ignore = ground_truth(info)
        try:
            errors, dets, records = explain_image_errors(
                model, image, boxes, labels, ignore, explainer=explainer,
                class_names=class_names, score_thr=args.score_thr,
                fg_iou=args.fg_iou, bg_iou=args.bg_iou)
        except ValueError as e:  # a detector family ODAM cannot explain
            return fail(str(e))
        counts.add(errors, dets['det_labels'], labels)
        report.add_image(image, osp.basename(info['img_path']), records)
    summary = counts.summary()
    settings = dict(config=args.config, checkpoint=args.checkpoint,
                    split=args.split, images=num, score_thr=args.score_thr,
                    fg_iou=args.fg_iou, bg_iou=args.bg_iou,
                    max_cards=args.max_cards)
    try:
        written = report.finish(summary, settings)
    except OutputConflictError as e:
        return fail(str(e))
    from mmdet_odam.evaluation.error_analysis import format_error_table
    print(f'Error types ({osp.basename(args.config)}, {num} images, '
          f'score >= {args.score_thr})')
    print(format_error_table(summary))
    print(f"wrote {written['index']}, {written['json']} and "
          f"{written['table']}")
    for path in written['kept']:
        print(f'note: kept {path} (an earlier output that changed since)',
              file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
