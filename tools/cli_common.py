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


def find_config(path: str) -> str:
    """A local path for a config; ``pkg::x.py`` is package ``pkg``'s
    installed config ``x.py`` (``mmdet::fcos/...``, as MMEngine reads them).

    Raises:
        FileNotFoundError: If the package is not installed or the file does
            not exist (one-line message).
    """
    if '::' in path:
        pkg, rel = path.split('::', 1)
        try:
            from mmengine.utils import get_installed_path
            path = osp.join(get_installed_path(pkg), '.mim', 'configs', rel)
        except Exception:  # package not installed
            raise FileNotFoundError(
                f'cannot resolve config {pkg}::{rel} (is {pkg} installed?)'
            ) from None
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    return path


def resolve_config(path: str) -> str:
    """:func:`find_config`, exiting with a one-line message on failure."""
    try:
        return find_config(path)
    except FileNotFoundError as e:
        sys.exit(f'error: {e}')


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one ``error:`` line (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f'error: {message} (see {self.prog} --help)\n')


def key_value(text: str) -> str:
    """argparse ``type`` of one ``--cfg-options`` item: ``key=value``."""
    key, sep, _ = text.partition('=')
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f'expected key=value pairs, got {text!r}')
    return text


def add_cfg_options(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options key=value ...``, parsed by MMEngine's ``DictAction``
    after each item was checked to have a key and ``=``."""
    from mmengine.config import DictAction
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        type=key_value,
        help='override settings of the config, as key=value pairs '
        '(e.g. train_cfg.max_epochs=1 or key="[a,b]").')


def resolve_device(device: Optional[str]) -> str:
    """:func:`mmdet_odam.apis.detector.resolve_device` (imported when
    called: that needs torch)."""
    from mmdet_odam.apis.detector import resolve_device as resolve
    return resolve(device)


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--launcher`` and ``--local-rank``, as MMDetection's
    own tools take them (so that MMEngine's launchers work unchanged)."""
    add_cfg_options(parser)
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


def fail(message: str) -> int:
    """Print ``message`` as one ``error:`` line (its lines joined) on stderr;
    returns the exit status 1."""
    lines = [line.strip() for line in str(message).splitlines()]
    print('error: ' + ' | '.join(line for line in lines if line),
          file=sys.stderr)
    return 1


def load_explained_detector(config, args: argparse.Namespace, device: str,
                            cfg_options: Optional[dict] = None):
    """The detector of ``config`` with ``args.checkpoint`` loaded by the
    shared checkpoint options (``--trust-checkpoint``,
    ``--allow-partial-load``).

    Returns:
        tuple: (model, None), or (None, a one-line reason) when the
        checkpoint or config cannot be loaded.
    """
    from mmdet_odam.apis import init_explained_detector
    try:
        return init_explained_detector(
            config, args.checkpoint, device, cfg_options,
            trusted=args.trust_checkpoint,
            strict=not args.allow_partial_load), None
    except (FileNotFoundError, ValueError) as e:
        return None, str(e)
    except Exception as e:  # config syntax, unknown model type
        return None, (f'cannot build the detector from {args.config}: '
                      f'{type(e).__name__}: {e}').splitlines()[0]


# The environment torchrun (and torch.distributed.launch) sets per process.
TORCHRUN_VARIABLES = ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                      'MASTER_PORT')


def setup_distributed(cfg, launcher: str) -> None:
    """Set ``cfg.launcher`` and make the ``pytorch`` launcher start on CPU.

    MMEngine's ``pytorch`` launcher calls ``torch.cuda.set_device`` and opens
    an NCCL process group, and its DDP wrapper passes ``device_ids``, which
    all fail without CUDA. There the process group is opened here with gloo
    from torchrun's environment (the Runner then finds it open and keeps it)
    and DDP wraps the CPU model without ``device_ids``. With CUDA, or other
    launchers, MMEngine's own path runs unchanged (NCCL). Call it after every
    other change to ``cfg``, before building the Runner.

    Args:
        cfg (mmengine.Config): Runner config, changed in place.
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
    """
    cfg.launcher = launcher
    if launcher != 'pytorch':
        return
    import torch
    if torch.cuda.is_available():
        return
    import datetime

    import torch.distributed as dist
    from mmengine.registry import MODEL_WRAPPERS
    from torch.nn.parallel import DistributedDataParallel

    missing = [k for k in TORCHRUN_VARIABLES if k not in os.environ]
    if missing:
        sys.exit(f'error: --launcher pytorch needs the environment torchrun '
                 f'sets ({", ".join(missing)} missing): start the tool with '
                 'torchrun --nproc_per_node N ...')
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'  # what the group below uses, for the log
    if not dist.is_initialized():
        dist.init_process_group(
            backend='gloo', init_method='env://',
            timeout=datetime.timedelta(
                seconds=float(dist_cfg.get('timeout', 1800))))
    wrapper = cfg.get('model_wrapper_cfg', None) or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_type = wrapper.get('type', 'MMDistributedDataParallel')
    wrapper_cls = wrapper_type if isinstance(wrapper_type, type) else \
        MODEL_WRAPPERS.get(wrapper_type)
    if wrapper_cls is not None and issubclass(wrapper_cls,
                                              DistributedDataParallel):
        wrapper['device_ids'] = None  # a CPU module takes no device ids
    cfg.model_wrapper_cfg = wrapper
