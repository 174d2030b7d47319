"""Checkpoints load without running code from them (torch's ``weights_only``
plus MMEngine's data types), only the opt-in unpickles fully, and importing
the plugin changes no loader of the process."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs/fcos/fcos_tiny_synthetic-crowd.py'


def test_import_changes_no_checkpoint_loader():
    """In a fresh interpreter: mmengine's local loader and torch's allow-list
    are the same objects before and after ``import mmdet_odam``."""
    code = (
        'import torch\n'
        'from mmengine.runner.checkpoint import CheckpointLoader\n'
        'before = (dict(CheckpointLoader._schemes), '
        'set(torch.serialization.get_safe_globals()))\n'
        'import mmdet_odam\n'
        'after = (dict(CheckpointLoader._schemes), '
        'set(torch.serialization.get_safe_globals()))\n'
        'assert before == after, (before, after)\n'
        'print("same")\n')
    res = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and 'same' in res.stdout, res.stderr[-2000:]


def _init_detector(path):
    from mmdet.apis import init_detector
    return init_detector(str(CONFIG), str(path), device='cpu')


def _mmengine_load_checkpoint(path):
    from mmengine.runner import load_checkpoint
    model = _init_detector(REPO / 'checkpoints/fcos_tiny_synthetic-crowd.pth')
    return load_checkpoint(model, str(path), map_location='cpu')


def _config_with_custom_imports(path):
    # Config.fromfile imports the config's custom_imports (mmdet_odam)
    from mmdet.apis import init_detector
    from mmengine.config import Config
    cfg = Config.fromfile(str(CONFIG))
    assert 'mmdet_odam' in cfg.custom_imports['imports']
    return init_detector(cfg, str(path), device='cpu')


def _plugin_loader(path):
    from mmdet_odam.utils import load_checkpoint_file
    return load_checkpoint_file(path)


def _plugin_init(path):
    from mmdet_odam.apis import init_explained_detector
    return init_explained_detector(str(CONFIG), str(path))


@pytest.mark.parametrize('load', [
    _init_detector, _mmengine_load_checkpoint, _config_with_custom_imports,
    _plugin_loader, _plugin_init
])
def test_malicious_checkpoint_does_not_run(load, malicious_checkpoint):
    import mmdet_odam  # noqa: F401  (the plugin is imported)
    path, marker = malicious_checkpoint
    with pytest.raises(Exception) as info:
        load(path)
    assert not marker.exists(), f'{load.__name__} ran the pickle'
    if load in (_plugin_loader, _plugin_init):
        from mmdet_odam.utils import UnsafeCheckpointError
        assert info.type is UnsafeCheckpointError
        message = str(info.value)
        assert '\n' not in message
        assert 'builtins.exec' in message and 'trusted=True' in message


def test_trusted_opt_in_unpickles_fully(malicious_checkpoint):
    """The opt-in is what it says: the same file then runs its pickle (so the
    refusals above refused a working payload)."""
    from mmdet_odam.utils import load_checkpoint_file
    path, marker = malicious_checkpoint
    load_checkpoint_file(path, trusted=True)
    assert marker.read_text() == 'ran'


def test_allow_list_lists_only_data_types_and_is_removed():
    from mmdet_odam.utils import load_checkpoint_file
    from mmdet_odam.utils.checkpoint import _history_buffer_getattr
    # torch keeps the allow-list in a set: compare contents, not order
    before = set(torch.serialization.get_safe_globals())
    load_checkpoint_file(REPO / 'checkpoints/fcos_tiny_synthetic-crowd.pth')
    assert set(torch.serialization.get_safe_globals()) == before
    # the getattr stand-in serves HistoryBuffer's statistics only
    from mmengine.logging import HistoryBuffer
    assert _history_buffer_getattr(HistoryBuffer, 'mean') is \
        HistoryBuffer.mean
    import pickle
    for obj, name in ((HistoryBuffer, '__init__'), (np, 'load'),
                      (HistoryBuffer, 'nonexistent')):
        with pytest.raises(pickle.UnpicklingError):
            _history_buffer_getattr(obj, name)


def test_user_safe_globals_survive_a_load():
    """A global the user allow-listed stays allow-listed after our load."""
    from mmengine.logging import HistoryBuffer

    from mmdet_odam.utils import load_checkpoint_file
    with torch.serialization.safe_globals([HistoryBuffer]):
        load_checkpoint_file(REPO / 'checkpoints/fcos_tiny_synthetic-crowd.pth')
        assert HistoryBuffer in torch.serialization.get_safe_globals()
