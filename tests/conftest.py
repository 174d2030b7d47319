from pathlib import Path

import pytest


@pytest.fixture(scope='session')
def synthetic_crowd_root(tmp_path_factory) -> Path:
    """A small synthetic crowd dataset (16 train / 12 val images, 128 px,
    1 class, seed 0), generated once per session.

    Layout: see ``mmdet_odam.datasets.synthetic_crowd`` (``images/{train,val}``
    and ``annotations/``). Treat it as read-only.
    """
    from mmdet_odam.datasets.synthetic_crowd import generate_synthetic_crowd
    root = tmp_path_factory.mktemp('synthetic_crowd')
    generate_synthetic_crowd(root, num_train=16, num_val=12, img_size=128,
                             num_classes=1, seed=0)
    return root


class _WritesMarkerWhenUnpickled:
    """Unpickling this object runs code: it writes ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f'open({self.marker!r}, "w").write("ran")', ))


@pytest.fixture
def malicious_checkpoint(tmp_path):
    """A checkpoint with the bundled tiny FCOS weights and a pickle that
    writes a marker file when the checkpoint is fully unpickled.

    Returns:
        tuple[Path, Path]: The checkpoint and the marker (absent until the
        pickle runs).
    """
    import torch
    repo = Path(__file__).resolve().parents[1]
    weights = torch.load(repo / 'checkpoints/fcos_tiny_synthetic-crowd.pth',
                         map_location='cpu', weights_only=True)
    marker = tmp_path / 'pickle_ran.txt'
    path = tmp_path / 'evil.pth'
    torch.save(dict(weights, payload=_WritesMarkerWhenUnpickled(str(marker))),
               path)
    return path, marker
