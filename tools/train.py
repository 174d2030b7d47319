"""Train a detector with MMDetection 3.x and the mmdet-odam modules.

Same arguments as MMDetection's ``tools/train.py``. Importing ``mmdet_odam``
registers this project's modules; ``load_from`` / ``--resume`` checkpoints are
loaded by ``SafeCheckpointRunner`` (Runner-written checkpoints resume; no code
from the file runs unless ``--trust-checkpoint``).

Example::

    python tools/train.py configs/fcos/fcos_tiny_synthetic-crowd.py
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/ helpers
from cli_common import (REPO_ROOT, OneLineArgumentParser,  # noqa: E402
                        add_checkpoint_args, add_runner_args,
                        apply_checkpoint_args, parse_runner_args,
                        resolve_config, setup_distributed)

# this checkout's mmdet_odam (also for the configs' custom_imports), as
# explain.py and eval_explanations.py, whatever else is installed
sys.path.insert(0, REPO_ROOT)


def parse_args():
    parser = OneLineArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR.')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or (no value) from the latest '
        'checkpoint in the work directory.')
    add_runner_args(parser)
    add_checkpoint_args(parser, partial_load=False)
    return parse_runner_args(parser)


def main():
    args = parse_args()
    config = resolve_config(args.config)
    if args.resume not in (None, 'auto') and not osp.isfile(args.resume):
        sys.exit(f'error: checkpoint file not found: {args.resume}')

    import mmdet_odam  # noqa: F401  (registers modules)
    from mmdet_odam.engine import build_runner
    from mmdet_odam.utils import UnsafeCheckpointError
    from mmengine.config import Config

    from mmdet.utils import setup_cache_size_limit_of_dynamo

    # fewer repeated compilations when torch.compile is used
    setup_cache_size_limit_of_dynamo()

    cfg = Config.fromfile(config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # work_dir priority: CLI > config file > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])

    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and 'enable' in cfg.auto_scale_lr and \
                'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            sys.exit('error: --auto-scale-lr needs `auto_scale_lr` with '
                     '`enable` and `base_batch_size` in the config')

    # resume from a given checkpoint > auto resume from the work dir
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    apply_checkpoint_args(cfg, args, cfg.get('load_from', None))
    setup_distributed(cfg, args.launcher)
    runner = build_runner(cfg)
    try:
        runner.train()
    except UnsafeCheckpointError as e:
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
