"""Compatibility shims for the pinned stack (torch >= 2.6, mmengine 0.10.7).

torch >= 2.6 defaults ``torch.load(weights_only=True)``; mmengine 0.10.7 stores
message-hub state and numpy objects in its checkpoints and loads them with a plain
``torch.load``, so ``load_from``/``resume`` fail. We re-register mmengine's local
checkpoint loader so that it passes ``weights_only=False`` explicitly. Only load
checkpoints you trust: unpickling can run code, as it always could before torch 2.6.
"""
import os.path as osp

import torch
from mmengine.runner.checkpoint import CheckpointLoader

_PATCHED = False


def load_local_checkpoint(filename: str, map_location=None) -> dict:
    """Load a local checkpoint file written by mmengine (full pickle).

    Args:
        filename (str): Path of the checkpoint file.
        map_location: Same as :func:`torch.load`.

    Returns:
        dict: The loaded checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename}')
    return torch.load(filename, map_location=map_location, weights_only=False)


def patch_checkpoint_loading() -> None:
    """Make mmengine's local loader work with torch >= 2.6 (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    load_local_checkpoint.__name__ = 'load_from_local'  # mmengine logs name[10:]
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)
    _PATCHED = True
