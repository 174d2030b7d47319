"""Helpers shared by the thin CLIs in ``tools/`` (kept free of heavy imports
so that bad arguments fail fast, before torch and MMDetection load)."""
import os.path as osp
import sys


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
