"""Test (and evaluate) a detector with MMDetection 3.x and mmdet-odam modules.

Same arguments as MMDetection's ``tools/test.py``. Importing ``mmdet_odam``
registers this project's modules; the checkpoint is loaded by
``SafeCheckpointRunner`` (no code from the file runs unless
``--trust-checkpoint``) and must fit the config (``--allow-partial-load`` to
load it anyway).

Metrics come from the config's test evaluator: COCO bbox mAP for COCO-format
data; AP50 / MR^-2 / JI and the crowd / sparse recall breakdown
(``CrowdHumanRecallMetric``) for CrowdHuman-format data. ``--out`` dumps the
predictions to a pickle file.

Example::

    python tools/test.py configs/fcos/fcos_tiny_synthetic-crowd.py \
        work_dirs/fcos_tiny_synthetic-crowd/epoch_20.pth
    python tools/test.py configs/fcos/fcos_tiny_synthetic-crowdhuman.py \
        checkpoints/fcos_tiny_synthetic-crowd.pth --data-root data/my_crowd
"""
import os.path as osp
import sys
from copy import deepcopy

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/ helpers
from cli_common import (REPO_ROOT, OneLineArgumentParser,  # noqa: E402
                        add_checkpoint_args, add_runner_args,
                        apply_checkpoint_args, parse_runner_args,
                        resolve_config, setup_distributed)

# this checkout's mmdet_odam (also for the configs' custom_imports), as
# explain.py and eval_explanations.py, whatever else is installed
sys.path.insert(0, REPO_ROOT)


def _rebase(path, old_root: str, new_root: str):
    """``old_root + rest`` -> ``new_root + rest``; other values unchanged."""
    if isinstance(path, str) and old_root and path.startswith(old_root):
        return new_root + path[len(old_root):]
    return path


def override_data_root(cfg, new_root: str) -> None:
    """Point every dataloader and evaluator of ``cfg`` at ``new_root``.

    Dataset ``ann_file`` / ``data_prefix`` are relative to ``data_root``, but
    paths that the config built as ``data_root + '...'`` when it was parsed
    (CrowdHuman ``extra_ann_file``, evaluator ``ann_file``) are not: those
    starting with the config's ``data_root`` are re-based onto ``new_root``.
    """
    new_root = new_root.rstrip('/') + '/'
    old_root = cfg.get('data_root', None)
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader', None)
        dataset = loader.get('dataset', None) if loader else None
        while dataset is not None:  # wrappers (RepeatDataset, ...) nest
            if 'data_root' in dataset:
                old = dataset.data_root or old_root or ''
                old = old.rstrip('/') + '/' if old else old
                for key in ('ann_file', 'extra_ann_file'):
                    if key in dataset:
                        dataset[key] = _rebase(dataset[key], old, new_root)
                dataset.data_root = new_root
            dataset = dataset.get('dataset', None)
        evaluators = cfg.get(f'{split}_evaluator', None)
        if evaluators is None:
            continue
        if not isinstance(evaluators, (list, tuple)):
            evaluators = [evaluators]
        for evaluator in evaluators:
            if old_root and 'ann_file' in evaluator:
                evaluator.ann_file = _rebase(evaluator.ann_file,
                                             old_root.rstrip('/') + '/',
                                             new_root)
    cfg.data_root = new_root


def parse_args():
    parser = OneLineArgumentParser(
        description='MMDet test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--data-root',
        help='dataset root replacing the config\'s data_root, also in paths '
        'built from it (CrowdHuman extra_ann_file, evaluator ann_file)')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved (inside '
        'work_dir/timestamp/)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--tta', action='store_true')
    add_runner_args(parser)
    add_checkpoint_args(parser)
    return parse_runner_args(parser)


def main():
    args = parse_args()
    config = resolve_config(args.config)
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        sys.exit(f'error: checkpoint file not found: {args.checkpoint}')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        sys.exit('error: --out must be a .pkl or .pickle file')

    import mmdet_odam  # noqa: F401  (registers modules)
    from mmdet_odam.engine import build_runner
    from mmdet_odam.utils import (CheckpointMismatchError,
                                  UnsafeCheckpointError)
    from mmengine.config import Config, ConfigDict

    from mmdet.engine.hooks.utils import trigger_visualization_hook
    from mmdet.evaluation import DumpDetResults
    from mmdet.utils import setup_cache_size_limit_of_dynamo

    setup_cache_size_limit_of_dynamo()

    cfg = Config.fromfile(config)
    if args.data_root is not None:
        override_data_root(cfg, args.data_root)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # work_dir priority: CLI > config file > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])

    from mmdet_odam.models import check_odam_nms_config
    try:  # an odam_nms entry that the plain detector would ignore
        check_odam_nms_config(cfg.model)
    except ValueError as e:
        sys.exit(f'error: {e}')

    cfg.load_from = args.checkpoint
    apply_checkpoint_args(cfg, args, args.checkpoint)

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    if args.tta:
        if 'tta_model' not in cfg:
            cfg.tta_model = dict(
                type='DetTTAModel',
                tta_cfg=dict(
                    nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
        if 'tta_pipeline' not in cfg:
            test_data_cfg = cfg.test_dataloader.dataset
            while 'dataset' in test_data_cfg:
                test_data_cfg = test_data_cfg['dataset']
            cfg.tta_pipeline = deepcopy(test_data_cfg.pipeline)
            cfg.tta_pipeline[-1] = dict(
                type='TestTimeAug',
                transforms=[
                    [
                        dict(type='RandomFlip', prob=1.),
                        dict(type='RandomFlip', prob=0.)
                    ],
                    [
                        dict(
                            type='PackDetInputs',
                            meta_keys=('img_id', 'img_path', 'ori_shape',
                                       'img_shape', 'scale_factor', 'flip',
                                       'flip_direction'))
                    ],
                ])
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline

    setup_distributed(cfg, args.launcher)
    runner = build_runner(cfg)
    if args.out is not None:
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    try:
        runner.test()
    except (CheckpointMismatchError, UnsafeCheckpointError) as e:
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
