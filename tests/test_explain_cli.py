"""Tests for tools/explain.py, tools/demo.py, the export helpers and the heat
map rendering functions. Uses a randomly initialised tiny FCOS (scores
~0.3)."""
import importlib.util
import math
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmdet_odam.apis.export import load_heatmaps_npz

from mmdet_odam.visualization import (colorize_heatmap, make_gallery,
                                      overlay_heatmap)

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs' / 'fcos' / 'fcos_tiny_synthetic-crowd.py'
EXPLAIN = REPO / 'tools' / 'explain.py'
DEMO = REPO / 'tools' / 'demo.py'
TARGETS = ['score', 'x1', 'y1', 'x2', 'y2', 'combined']


def _load_tool(path: Path):
    spec = importlib.util.spec_from_file_location(f'_tool_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, str(EXPLAIN), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          cwd=str(REPO))


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Random-init checkpoints: one matching the config, one whose head has
    3 classes."""
    import torch
    from mmdet.apis import init_detector

    import mmdet_odam  # noqa: F401
    root = tmp_path_factory.mktemp('ckpt')
    meta = {'dataset_meta': {'classes': ('person', )}}
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True):  # "checkpoint is None"
        model = init_detector(str(CONFIG), None, device='cpu')
    good = root / 'random.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': meta}, good)
    with warnings.catch_warnings(record=True):
        other = init_detector(str(CONFIG), None, device='cpu',
                              cfg_options={'model.bbox_head.num_classes': 3})
    bad = root / 'three_classes.pth'
    torch.save({'state_dict': other.state_dict(),
                'meta': {'dataset_meta': {'classes': ('a', 'b', 'c')}}}, bad)
    return dict(good=good, bad=bad)


@pytest.fixture(scope='module')
def explain_tool():
    return _load_tool(EXPLAIN)


@pytest.fixture
def val_images(synthetic_crowd_root):
    return [synthetic_crowd_root / 'images' / 'val' / f'00000{i}.png'
            for i in range(2)]


# -- CLI ---------------------------------------------------------------------
def test_cli_explains_images_and_skips_missing(tmp_path, checkpoints,
                                               val_images):
    out = tmp_path / 'out'
    missing = tmp_path / 'no_such_image.png'
    res = _run(CONFIG, checkpoints['good'], *val_images, missing,
               '--out-dir', out, '--device', 'cpu', '--score-thr', '0.3')
    assert res.returncode == 0, res.stderr
    assert 'Traceback' not in res.stderr
    assert 'no_such_image.png' in res.stderr and 'warning' in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out']
    total = 0
    for img_path in val_images:
        h, w = cv2.imread(str(img_path)).shape[:2]
        stem = img_path.stem
        with np.load(out / f'{stem}.npz') as data:
            assert list(data['targets']) == TARGETS
            n = len(data['scores'])
            assert data['bboxes'].shape == (n, 4)
            assert data['bboxes'].dtype == np.float32
            assert data['labels'].shape == (n, )
            assert 'heatmaps' not in data.files  # compact unless asked
            assert data['heatmap_values'].dtype == np.float16
            maps = load_heatmaps_npz(data)
            assert maps.shape == (n, len(TARGETS), h, w)
            assert np.all(np.isfinite(maps))
            assert maps.min() >= 0 and maps.max() <= 1
            assert np.all(data['scores'] >= 0.3)
        total += n
        folder = out / stem
        assert (folder / 'gallery.png').is_file()
        pngs = sorted(p.name for p in folder.glob('det*.png'))
        assert pngs == sorted(f'det{i:03d}_{t}.png' for i in range(n)
                              for t in TARGETS)
        if n:
            overlay = cv2.imread(str(folder / 'det000_combined.png'))
            # the picture on top, its legend band (name, colour bar) below
            assert overlay.shape[1:] == (w, 3) and overlay.shape[0] > h
    assert total > 0, 'the random model should give detections >= 0.3'


def test_cli_missing_config_one_line(tmp_path, checkpoints, val_images):
    res = _run(tmp_path / 'nope.py', checkpoints['good'], val_images[0],
               '--out-dir', tmp_path / 'out')
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in res.stderr
    assert 'config file not found' in lines[0] and 'nope.py' in lines[0]
    assert not (tmp_path / 'out').exists()


def _main(tool, capsys, *args):
    code = tool.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize('flag,value,named,choices', [
    ('--feature', 'nonexistent', "'nonexistent'", 'neck'),
    ('--cell-position', 'centre', 'cell_position', 'receptive_field')])
def test_cli_bad_option_one_line(tmp_path, checkpoints, val_images,
                                 explain_tool, capsys, flag, value, named,
                                 choices):
    code, _, err = _main(explain_tool, capsys, CONFIG, checkpoints['good'],
                         val_images[0], '--out-dir', tmp_path / 'out',
                         '--device', 'cpu', flag, value)
    assert code != 0
    line = err.strip().splitlines()[-1]
    assert line.startswith('error:') and named in line
    assert choices in line  # says which values exist


def test_cli_checkpoint_mismatch(tmp_path, checkpoints, val_images,
                                 explain_tool, capsys):
    code, _, err = _main(explain_tool, capsys, CONFIG, checkpoints['bad'],
                         val_images[0], '--out-dir', tmp_path / 'out',
                         '--device', 'cpu')
    assert code != 0
    line = err.strip().splitlines()[-1]
    assert line.startswith('error:') and 'does not match' in line
    assert 'bbox_head.conv_cls' in line and '[3, 64, 3, 3]' in line
    # loaded anyway on request: what fits, with the difference named
    with pytest.warns(UserWarning, match='loaded partially.*conv_cls'):
        code, _, err = _main(explain_tool, capsys, CONFIG,
                             checkpoints['bad'], val_images[0], '--out-dir',
                             tmp_path / 'out', '--device', 'cpu',
                             '--allow-partial-load', '--targets', 'score')
    assert code == 0, err


def test_cli_unknown_target_and_no_images(tmp_path, checkpoints, val_images,
                                          explain_tool, capsys):
    code, _, err = _main(explain_tool, capsys, CONFIG, checkpoints['good'],
                         val_images[0], '--out-dir', tmp_path / 'out',
                         '--targets', 'score', 'area')
    assert code != 0 and "unknown target(s) area" in err
    empty = tmp_path / 'empty'
    empty.mkdir()
    code, _, err = _main(explain_tool, capsys, CONFIG, checkpoints['good'],
                         empty, '--out-dir', tmp_path / 'out')
    assert code != 0 and 'no images found' in err


def test_cli_zero_detections(tmp_path, checkpoints, val_images,
                             synthetic_crowd_root, explain_tool, capsys):
    out = tmp_path / 'out'
    corrupt = tmp_path / 'corrupt.png'
    corrupt.write_bytes(b'not a png')
    code, stdout, err = _main(explain_tool, capsys, CONFIG,
                              checkpoints['good'], val_images[0], corrupt,
                              '--out-dir', out, '--device', 'cpu',
                              '--score-thr', '1.1', '--targets', 'score',
                              'combined')
    assert code == 0, err
    assert 'corrupt.png' in err  # skipped with a warning
    assert 'no detections' in stdout
    stem = val_images[0].stem
    with np.load(out / f'{stem}.npz') as data:
        assert data['bboxes'].shape == (0, 4)
        assert data['scores'].shape == (0, )
        assert load_heatmaps_npz(data).shape[:2] == (0, 2)
        assert list(data['targets']) == ['score', 'combined']
    assert (out / stem / 'gallery.png').is_file()
    assert not list((out / stem).glob('det*.png'))
    assert not (out / 'corrupt.npz').exists()


def test_cli_crowdhuman_config_without_dataset_files(
        tmp_path, val_images, explain_tool, capsys, monkeypatch):
    """Odam-NMS configs are CrowdHuman-format: explaining one image must not
    need the dataset's id_hw file (its relative data_root is absent here)."""
    monkeypatch.chdir(tmp_path)
    config = REPO / 'configs/fcos/fcos_tiny_odam-nms_synthetic-crowdhuman.py'
    code, _, err = _main(explain_tool, capsys, config,
                         REPO / 'checkpoints/fcos_tiny_synthetic-crowd.pth',
                         val_images[0], '--out-dir', tmp_path / 'out',
                         '--device', 'cpu', '--targets', 'score')
    assert code == 0, err
    assert not (tmp_path / 'data').exists()
    with np.load(tmp_path / 'out' / f'{val_images[0].stem}.npz') as data:
        assert len(data['scores']) > 0


def test_cli_mmdet_config_of_unsupported_family_one_line(
        tmp_path, val_images, explain_tool, capsys):
    """``mmdet::`` configs resolve; CenterNet (random weights that fit) ends in
    one line naming the supported families, nothing written."""
    import torch
    from mmdet.apis import init_detector
    from mmengine.utils import get_installed_path
    config = 'mmdet::centernet/centernet_r18_8xb16-crop512-140e_coco.py'
    local = Path(get_installed_path('mmdet'), '.mim', 'configs',
                 'centernet', 'centernet_r18_8xb16-crop512-140e_coco.py')
    with warnings.catch_warnings(record=True):
        model = init_detector(str(local), None, device='cpu')
    checkpoint = tmp_path / 'centernet_random.pth'
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    out = tmp_path / 'out'
    code, _, err = _main(explain_tool, capsys, config, checkpoint,
                         val_images[0], '--out-dir', out, '--device', 'cpu')
    assert code == 1 and 'Traceback' not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith('error: no ODAM adapter for CenterNet'), err
    assert 'FCOS' in line and 'Faster' in line and 'DETR' in line
    assert not out.exists()


def test_cli_cuda_without_cuda_and_bad_cfg_options(
        tmp_path, checkpoints, val_images, explain_tool, capsys, monkeypatch):
    import mmdet_odam.apis as apis
    import torch

    def no_model(*args, **kwargs):
        raise AssertionError('the model was built')

    monkeypatch.setattr(apis, 'init_explained_detector', no_model)
    common = [CONFIG, checkpoints['good'], val_images[0], '--out-dir',
              tmp_path / 'out']
    if not torch.cuda.is_available():
        code, _, err = _main(explain_tool, capsys, *common, '--device',
                             'cuda')
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1, err
        assert 'CUDA is not available' in lines[0]
        assert 'config' not in lines[0]
    code, _, err = _main(explain_tool, capsys, *common, '--device', 'gpu0')
    assert code == 1 and 'not a torch device' in err
    with pytest.raises(SystemExit) as exit_info:
        explain_tool.main([str(a) for a in common] + ['--cfg-options', 'foo'])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error:')
    assert 'cfg-options' in lines[0] and "'foo'" in lines[0]
    assert not (tmp_path / 'out').exists()


def test_demo_writes_summary(tmp_path, checkpoints, val_images, capsys):
    demo = _load_tool(DEMO)
    out = tmp_path / 'demo'
    code = demo.main(['--out-dir', str(out), '--device', 'cpu',
                      '--checkpoint', str(checkpoints['good']),
                      '--image', str(val_images[1])])
    capsys.readouterr()
    assert code == 0
    text = (out / 'summary.txt').read_text()
    assert 'energy_in_box' in text
    with np.load(out / f'{val_images[1].stem}.npz') as data:
        assert list(data['targets']) == TARGETS
        n = len(data['scores'])
    rows = [ln for ln in text.splitlines() if ln and not ln.startswith('#')]
    assert len(rows) == n + 1  # header + one row per detection
    code = demo.main(['--out-dir', str(out),
                      '--checkpoint', str(tmp_path / 'missing.pth')])
    err = capsys.readouterr().err
    assert code != 0 and 'missing.pth' in err and 'tools/train.py' in err


# -- export helpers --------------------------------------------------------
def test_box_energy_fraction():
    from mmdet_odam.apis.export import box_energy_fraction
    heat = np.zeros((10, 20), np.float32)
    heat[2:4, 5:9] = 1.
    assert box_energy_fraction(heat, (5, 2, 9, 4)) == pytest.approx(1.)
    assert box_energy_fraction(heat, (5, 2, 7, 4)) == pytest.approx(0.5)
    assert box_energy_fraction(heat, (10, 5, 20, 10)) == 0.
    assert math.isnan(box_energy_fraction(np.zeros((4, 4)), (0, 0, 4, 4)))


def test_collect_images_and_stems(tmp_path):
    from mmdet_odam.apis.export import collect_images, unique_stems
    (tmp_path / 'd').mkdir()
    for name in ('b.PNG', 'a.jpg', 'notes.txt'):
        (tmp_path / 'd' / name).write_bytes(b'x')
    (tmp_path / 'a.png').write_bytes(b'x')
    images, missing = collect_images(
        [str(tmp_path / 'd'), str(tmp_path / 'a.png'),
         str(tmp_path / 'd' / 'a.jpg'), str(tmp_path / 'gone.png')])
    assert [Path(p).name for p in images] == ['a.jpg', 'b.PNG', 'a.png']
    assert missing == [str(tmp_path / 'gone.png')]
    assert unique_stems(images) == ['a', 'b', 'a_2']


# -- rendering ---------------------------------------------------------------
def test_colorize_heatmap_rgb():
    heat = np.linspace(0, 1, 50, dtype=np.float32).reshape(5, 10)
    rgb = colorize_heatmap(heat)
    assert rgb.shape == (5, 10, 3) and rgb.dtype == np.uint8
    cold, hot = rgb[0, 0].astype(int), rgb[-1, -1].astype(int)
    assert cold[2] > cold[0]  # jet: blue at 0
    assert hot[0] > hot[2] and hot[0] > hot[1]  # red at 1 (RGB order)
    with pytest.raises(ValueError, match='2-D'):
        colorize_heatmap(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match='colormap'):
        colorize_heatmap(heat, cmap='no_such_map')


def test_overlay_all_zero_is_plain_image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out = overlay_heatmap(img, np.zeros((40, 60)))
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    np.testing.assert_array_equal(out, img[..., ::-1])  # BGR in, RGB out
    boxed = overlay_heatmap(img, np.zeros((40, 60)), box=(5, 5, 30, 20),
                            label_text='person 0.90')
    assert boxed.shape == (40, 60, 3)
    assert not np.array_equal(boxed, out)  # box drawn


def test_overlay_shape_mismatch_raises():
    img = np.zeros((40, 60, 3), np.uint8)
    with pytest.raises(ValueError, match='does not match'):
        overlay_heatmap(img, np.zeros((60, 40)))
    with pytest.raises(ValueError):
        overlay_heatmap(img[..., :2], np.zeros((40, 60)))


def test_overlay_peak_is_hot():
    img = np.full((64, 64, 3), 128, np.uint8)
    yy, xx = np.mgrid[:64, :64]
    heat = np.exp(-((yy - 20)**2 + (xx - 40)**2) / 50.)
    heat /= heat.max()
    out = overlay_heatmap(img, heat).astype(int)
    r, g, b = out[20, 40]
    assert r > g + 30 and r > b + 30
    far = out[60, 2]  # heat ~0: image unchanged
    assert np.abs(far - 128).max() <= 2


def test_make_gallery():
    tiles = [np.full((30, 40, 3), i * 40, np.uint8) for i in range(5)]
    grid = make_gallery(tiles, ncols=3, titles=[f'#{i}' for i in range(5)])
    assert grid.dtype == np.uint8 and grid.ndim == 3
    assert grid.shape[1] == 3 * 40 + 4 * 4
    assert grid.shape[0] > 2 * 30  # two rows plus captions
    small = make_gallery(tiles, tile_size=20)
    assert small.shape[1] == 3 * 20 + 4 * 4  # ceil(sqrt(5)) = 3 columns
    with pytest.raises(ValueError):
        make_gallery([])
    with pytest.raises(ValueError):
        make_gallery(tiles, titles=['only one'])


def test_compact_npz_equals_the_dense_maps_and_the_api(
        tmp_path, checkpoints, val_images, explain_tool, capsys):
    """The cropped maps of the npz rebuild exactly the dense float16 maps of
    ``--dense-npz`` and, to float16 precision, the API's rendered maps;
    ``--chunk-size`` reaches the explainer (0 is refused before the model)."""
    from mmdet_odam.apis import explain, init_explained_detector
    out = tmp_path / 'out'
    code, _, err = _main(explain_tool, capsys, CONFIG, checkpoints['good'],
                         val_images[0], '--out-dir', out, '--device', 'cpu',
                         '--dense-npz', '--chunk-size', '2')
    assert code == 0, err
    with np.load(out / f'{val_images[0].stem}.npz') as data:
        compact = load_heatmaps_npz(data)
        dense = data['heatmaps']
        size = data['heatmap_values'].size
    assert len(compact) > 0 and size < dense.size / 4
    assert np.array_equal(compact, dense.astype(np.float32))
    model = init_explained_detector(CONFIG, str(checkpoints['good']))
    api = explain(model, str(val_images[0])).pred_instances.heatmaps
    np.testing.assert_allclose(compact, api.to_ndarray(), atol=1e-3)
    code, _, err = _main(explain_tool, capsys, CONFIG, checkpoints['good'],
                         val_images[0], '--out-dir', tmp_path / 'other',
                         '--chunk-size', '0')
    assert code == 1 and 'chunk_size' in err and len(err.splitlines()) == 1
