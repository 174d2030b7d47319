"""Helpers shared by the thin CLIs in ``tools/`` (kept free of heavy imports
so that bad arguments fail fast, before torch and MMDetection load)."""
import argparse
import importlib.util
import os
import os.path as osp
import sys
from types import ModuleType
from typing import List, Optional

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_script(relative_path: str) -> ModuleType:
    """Import a script of this repository (e.g. ``tools/test.py``, not a
    package module) by its path relative to the repository root."""
    name = osp.splitext(osp.basename(relative_path))[0]
    spec = importlib.util.spec_from_file_location(
        name, osp.join(REPO_ROOT, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resolve_config(path: str) -> str:
    """Return a local path for ``path``; ``mmdet::x.py`` means MMDetection's
    installed config ``x.py``. Exit with a one-line message if missing."""
    if '::' in path:
        pkg, rel = path.split('::', 1)
        try:
            from mmengine.utils import get_installed_path
            path = osp.join(get_installed_path(pkg), '.mim', 'configs', rel)
        except Exception:  # package not installed
            sys.exit(f'error: cannot resolve config {pkg}::{rel}')
    if not osp.isfile(path):
        sys.exit(f'error: config file not found: {path}')
    return path


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--launcher`` and ``--local-rank``, as MMDetection's
    own tools take them (so that MMEngine's launchers work unchanged)."""
    from mmengine.config import DictAction
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, as key=value pairs '
        '(e.g. train_cfg.max_epochs=1 or key="[a,b]").')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_runner_args(parser: argparse.ArgumentParser,
                      argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse, exporting ``LOCAL_RANK`` for MMEngine when a launcher did not."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def add_checkpoint_args(parser: argparse.ArgumentParser,
                        partial_load: bool = True) -> None:
    """``--trust-checkpoint`` (full unpickling of the given checkpoint) and,
    for tools that evaluate a checkpoint, ``--allow-partial-load``."""
    parser.add_argument(
        '--trust-checkpoint', action='store_true',
        help='unpickle the checkpoint fully (it may then run code: only for '
        'files you trust); by default only weights and the data types '
        'MMEngine checkpoints hold are loaded')
    if partial_load:
        parser.add_argument(
            '--allow-partial-load', action='store_true',
            help='load a checkpoint whose weights do not all fit the config '
            '(default: missing, unexpected or wrongly shaped weights are an '
            'error)')


def apply_checkpoint_args(cfg, args: argparse.Namespace,
                          checkpoint: Optional[str]) -> None:
    """Set the :class:`mmdet_odam.engine.SafeCheckpointRunner` keys of
    ``cfg`` (``trusted_checkpoints``, ``strict_load``) from the arguments."""
    if checkpoint and getattr(args, 'trust_checkpoint', False):
        cfg.trusted_checkpoints = list(cfg.get('trusted_checkpoints', None)
                                       or []) + [checkpoint]
    if hasattr(args, 'allow_partial_load'):
        cfg.strict_load = not args.allow_partial_load
