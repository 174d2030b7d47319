"""Build a detector from a config and a checkpoint, strictly and safely."""
import os
import os.path as osp
import warnings
from typing import Optional

import torch

from ..utils.checkpoint import load_checkpoint_checked


def resolve_device(device: Optional[str]) -> str:
    """The torch device to use: ``device``, or ``cuda:0`` when available
    else ``cpu``.

    Raises:
        ValueError: If ``device`` is not a device name or its backend is not
            available here (one line naming the device and the reason).
    """
    if device is None:
        return 'cuda:0' if torch.cuda.is_available() else 'cpu'
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f'device {device!r} is not a torch device (e.g. '
                         'cpu, cuda, cuda:1)') from None
    if parsed.type == 'cuda':
        if not torch.cuda.is_available():
            why = 'no GPU is visible' if torch.version.cuda else \
                'this torch build has no CUDA'
            raise ValueError(f'device {device!r}: CUDA is not available '
                             f'({why}; torch {torch.__version__}); use '
                             'device cpu')
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f'device {device!r}: only {count} CUDA '
                             'device(s) visible')
    elif parsed.type == 'mps':
        if not torch.backends.mps.is_available():
            raise ValueError(f'device {device!r}: MPS is not available; use '
                             'device cpu')
    elif parsed.type != 'cpu':
        backend = getattr(torch, parsed.type, None)
        available = getattr(backend, 'is_available', None)
        if available is None or not available():
            raise ValueError(f'device {device!r}: {parsed.type} is not '
                             'available; use device cpu')
    return str(parsed)


def init_explained_detector(config, checkpoint: str, device: str = 'cpu',
                            cfg_options: Optional[dict] = None,
                            trusted: bool = False, strict: bool = True):
    """Build a detector from a config and load a checkpoint strictly.

    Like ``mmdet.apis.init_detector``, but the checkpoint is read without
    running code from it (:func:`mmdet_odam.utils.load_checkpoint_file`) and
    one that does not fit the config raises instead of only warning. Class
    names come from the checkpoint's meta, else from the config's test
    dataset ``metainfo``, else stay unknown (labels shown as numbers).

    Args:
        config (str | PathLike | Config): Detector config.
        checkpoint (str): Local checkpoint file.
        device (str): Torch device of the returned model.
        cfg_options (dict, optional): Config overrides.
        trusted (bool): Unpickle the checkpoint fully (it may then run
            code; only for files you trust).
        strict (bool): Refuse missing, unexpected or wrongly shaped weights.

    Raises:
        FileNotFoundError: Missing config or checkpoint.
        ValueError: Unavailable device;
            :class:`~mmdet_odam.utils.UnsafeCheckpointError` or
            :class:`~mmdet_odam.utils.CheckpointMismatchError`.
    """
    from mmdet.apis import init_detector
    from mmengine.config import Config
    device = resolve_device(device)
    if isinstance(config, (str, os.PathLike)):
        if not osp.isfile(config):
            raise FileNotFoundError(f'config file not found: {config}')
        config = Config.fromfile(config)
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {checkpoint}')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        # a palette given: init_detector does not build the test dataset,
        # which needs its annotation files (CrowdHuman's id_hw file)
        model = init_detector(config, None, device='cpu',
                              cfg_options=cfg_options, palette='random')
    for w in caught:  # the weights and class names come right after
        if 'checkpoint is None' not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename,
                                   w.lineno)
    model.dataset_meta = {}
    try:
        metainfo = model.cfg.test_dataloader.dataset.get('metainfo')
        if metainfo and metainfo.get('classes'):
            model.dataset_meta = dict(classes=tuple(metainfo['classes']))
    except AttributeError:  # config without a test dataloader
        pass
    load_checkpoint_checked(model, checkpoint, trusted=trusted, strict=strict)
    model.to(device)
    model.eval()
    return model
