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
