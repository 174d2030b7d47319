"""Tests for the deterministic synthetic crowd dataset generator."""
import importlib.util
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mmdet_odam.datasets import (SYNTHETIC_CROWD_CLASSES, crowd_fraction,
                                 crowd_mask, generate_synthetic_crowd,
                                 synthetic_crowd_classes)

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / 'tools' / 'generate_synthetic_crowd.py'
SMALL = dict(num_train=5, num_val=4, img_size=96)


def _tree(root: Path) -> dict:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob('*')) if p.is_file()
    }


def _anns_by_image(coco: dict) -> dict:
    out = defaultdict(list)
    for a in coco['annotations']:
        out[a['image_id']].append(a)
    return out


def _load(path: Path):
    return json.loads(path.read_text())


def _load_odgt(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _xyxy(b):
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]]


def _pipeline(with_mask: bool) -> list:
    return [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=with_mask),
        dict(type='PackDetInputs')
    ]


@pytest.fixture(scope='module')
def default_val_root(tmp_path_factory) -> Path:
    """100 val images with all-default generation settings."""
    root = tmp_path_factory.mktemp('sc_default')
    summary = generate_synthetic_crowd(root, num_train=0, num_val=100)
    (root / 'summary.json').write_text(json.dumps(summary))
    return root


# ---------------------------------------------------------------- classes
def test_classes():
    assert len(SYNTHETIC_CROWD_CLASSES) >= 4
    assert len(set(SYNTHETIC_CROWD_CLASSES)) == len(SYNTHETIC_CROWD_CLASSES)
    assert synthetic_crowd_classes(1) == ('person', )
    assert synthetic_crowd_classes(3) == SYNTHETIC_CROWD_CLASSES[:3]
    for bad in (0, len(SYNTHETIC_CROWD_CLASSES) + 1, 1.0, True):
        with pytest.raises(ValueError):
            synthetic_crowd_classes(bad)


# ---------------------------------------------------------------- crowd set
def test_crowd_mask_hand_made():
    boxes = np.array([
        [0, 0, 10, 10],  # A: IoU(A, B) = 80 / 120 = 0.667 -> crowd
        [2, 0, 12, 10],  # B
        [50, 50, 60, 60],  # C: IoU(C, D) = 50 / 150 = 0.333
        [55, 50, 65, 60],  # D
        [100, 100, 110, 110],  # E: IoU(E, F) = 100 / 200 = 0.5 (not > 0.5)
        [100, 100, 110, 120],  # F
        [200, 200, 210, 210],  # G: isolated
        [150, 0, 160, 10],  # H: IoU with I and J = 40 / 160 = 0.25 each
        [144, 0, 154, 10],  # I: IoU(I, J) = 0
        [156, 0, 166, 10],  # J
    ], dtype=np.float32)
    expected = [True, True] + [False] * 8
    assert crowd_mask(boxes).tolist() == expected
    assert crowd_mask(boxes).dtype == bool
    assert crowd_fraction(boxes) == pytest.approx(0.2)
    # a box never matches itself; duplicates match each other
    assert crowd_mask(boxes[:1]).tolist() == [False]
    assert crowd_mask(np.repeat(boxes[6:7], 2, 0)).tolist() == [True, True]
    assert crowd_mask(np.zeros((0, 4))).shape == (0, )
    assert crowd_fraction(np.zeros((0, 4))) == 0.0
    # degenerate boxes never count
    assert crowd_mask([[5, 5, 5, 5], [5, 5, 5, 5]]).tolist() == [False, False]


def test_default_val_crowd_fraction(default_val_root):
    coco = _load(default_val_root / 'annotations' / 'instances_val.json')
    summary = json.loads((default_val_root / 'summary.json').read_text())
    assert len(coco['images']) == 100
    n_crowd = n_box = 0
    for img_id, anns in _anns_by_image(coco).items():
        xywh = np.array([a['bbox'] for a in anns], np.float64)
        iou = mask_utils.iou(xywh, xywh, [0] * len(anns))
        iou = np.asarray(iou).reshape(len(anns), len(anns))
        np.fill_diagonal(iou, 0)
        crowd = (iou > 0.5).any(1)
        assert crowd.tolist() == crowd_mask(
            [_xyxy(b) for b in xywh]).tolist()
        n_crowd += int(crowd.sum())
        n_box += len(anns)
    assert n_box == len(coco['annotations']) == summary['val']['boxes']
    frac = n_crowd / n_box
    assert frac >= 0.2
    assert frac == pytest.approx(summary['val']['crowd_fraction'])


# ---------------------------------------------------------------- layout
def test_layout_and_annotation_consistency(synthetic_crowd_root):
    root = synthetic_crowd_root
    ann = root / 'annotations'
    for split, n in (('train', 16), ('val', 12)):
        coco = _load(ann / f'instances_{split}.json')
        odgt = _load_odgt(ann / f'annotation_{split}.odgt')
        id_hw = _load(ann / f'id_hw_{split}.json')
        assert [c['name'] for c in coco['categories']] == ['person']
        assert [c['id'] for c in coco['categories']] == [1]
        assert [im['file_name'] for im in coco['images']
                ] == [f'{split}/{i:06d}.png' for i in range(n)]
        assert [r['ID'] for r in odgt] == [f'{split}/{i:06d}' for i in range(n)]
        assert id_hw == {f'{split}/{i:06d}': [128, 128] for i in range(n)}
        pngs = sorted(p.name for p in (root / 'images' / split).glob('*.png'))
        assert pngs == [f'{i:06d}.png' for i in range(n)]
        by_img = _anns_by_image(coco)
        for im, rec in zip(coco['images'], odgt):
            png = root / 'images' / im['file_name']
            data = png.read_bytes()
            assert data[:8] == b'\x89PNG\r\n\x1a\n'
            assert (png.with_suffix('.jpg')).read_bytes() == data
            img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
            assert img.shape == (128, 128, 3) == (im['height'], im['width'], 3)
            anns = by_img[im['id']]
            assert anns, 'every image has objects'
            union = np.zeros((128, 128), np.int32)
            for a in anns:
                assert a['iscrowd'] == 0 and a['category_id'] == 1
                x, y, w, h = a['bbox']
                assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128
                assert w >= 1 and h >= 1
                m = mask_utils.decode(a['segmentation'])
                assert isinstance(a['segmentation']['counts'], str)
                assert m.shape == (128, 128)
                ys, xs = np.nonzero(m)
                assert a['area'] == len(ys) > 0
                # visible mask inside the full (amodal) box
                assert xs.min() >= x and xs.max() < x + w
                assert ys.min() >= y and ys.max() < y + h
                vb = a['visible_bbox']
                assert vb == [int(xs.min()), int(ys.min()),
                              int(xs.max() - xs.min() + 1),
                              int(ys.max() - ys.min() + 1)]
                assert 0.15 <= a['visibility'] <= 1.0
                union += m
            assert union.max() <= 1, 'visible masks are disjoint'
            # the odgt describes the same person boxes (same order)
            persons = [b for b in rec['gtboxes'] if b['tag'] == 'person']
            assert [b['fbox'] for b in persons] == [a['bbox'] for a in anns]
            for b in rec['gtboxes']:
                assert {'fbox', 'vbox', 'hbox', 'extra'} <= set(b)
                fx1, fy1, fx2, fy2 = _xyxy(b['fbox'])
                for key in ('vbox', 'hbox'):
                    bx1, by1, bx2, by2 = _xyxy(b[key])
                    assert fx1 <= bx1 < bx2 <= fx2 and fy1 <= by1 < by2 <= fy2
                if b['tag'] == 'mask':
                    assert b['extra']['ignore'] == 1
                else:
                    assert b['tag'] == 'person' and b['extra']['ignore'] == 0


# ---------------------------------------------------------------- mmdet
def test_loads_with_mmdet_coco_dataset(synthetic_crowd_root):
    from mmdet.datasets import CocoDataset
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    register_all_modules()
    root = synthetic_crowd_root
    coco = _load(root / 'annotations' / 'instances_val.json')
    by_img = _anns_by_image(coco)
    ds = CocoDataset(
        data_root=str(root), ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/'),
        metainfo=dict(classes=synthetic_crowd_classes(1)),
        pipeline=_pipeline(with_mask=True))
    assert len(ds) == 12
    for i in range(len(ds)):
        out = ds[i]
        sample = out['data_samples']
        assert isinstance(sample, DetDataSample)
        anns = by_img[sample.img_id]
        name = [im for im in coco['images']
                if im['id'] == sample.img_id][0]['file_name']
        bgr = cv2.imread(str(root / 'images' / name))
        np.testing.assert_array_equal(out['inputs'].permute(1, 2, 0).numpy(),
                                      bgr)
        gt = sample.gt_instances
        boxes = gt.bboxes.tensor.numpy()
        np.testing.assert_allclose(boxes, [_xyxy(a['bbox']) for a in anns])
        assert gt.labels.tolist() == [0] * len(anns)
        masks = gt.masks.masks
        assert masks.shape == (len(anns), 128, 128)
        for m, a in zip(masks, anns):
            np.testing.assert_array_equal(m, mask_utils.decode(
                a['segmentation']))


def test_loads_with_mmdet_crowdhuman_dataset(synthetic_crowd_root):
    from mmdet.datasets import CocoDataset, CrowdHumanDataset
    from mmdet.utils import register_all_modules
    register_all_modules()
    root = synthetic_crowd_root
    odgt = _load_odgt(root / 'annotations' / 'annotation_val.odgt')
    ds = CrowdHumanDataset(
        data_root=str(root), ann_file='annotations/annotation_val.odgt',
        extra_ann_file=str(root / 'annotations' / 'id_hw_val.json'),
        data_prefix=dict(img='images/'), pipeline=_pipeline(with_mask=False))
    coco_ds = CocoDataset(
        data_root=str(root), ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/'), metainfo=dict(classes=('person', )),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='PackDetInputs')])
    assert len(ds) == len(odgt) == 12
    n_ignored = 0
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert info['img_path'] == os.path.join(
            str(root), 'images', f'val/{i:06d}.jpg')
        assert (info['height'], info['width']) == (128, 128)
        out = ds[i]
        sample = out['data_samples']
        rec = odgt[i]
        assert sample.img_id == rec['ID']
        persons = [_xyxy(b['fbox']) for b in rec['gtboxes']
                   if b['tag'] == 'person']
        ignores = [_xyxy(b['fbox']) for b in rec['gtboxes']
                   if b['tag'] == 'mask']
        np.testing.assert_allclose(
            sample.gt_instances.bboxes.tensor.numpy().reshape(-1, 4),
            np.array(persons, np.float32).reshape(-1, 4))
        np.testing.assert_allclose(
            sample.ignored_instances.bboxes.tensor.numpy().reshape(-1, 4),
            np.array(ignores, np.float32).reshape(-1, 4))
        n_ignored += len(ignores)
        # the .jpg alias decodes to exactly the pixels CocoDataset sees
        assert out['inputs'].equal(coco_ds[i]['inputs'])
    assert n_ignored > 0, 'expected some ignore regions in 12 images'


def test_multiclass(tmp_path):
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules
    register_all_modules()
    classes = synthetic_crowd_classes(4)
    summary = generate_synthetic_crowd(tmp_path, num_train=1, num_val=8,
                                       img_size=96, num_classes=4, seed=1)
    coco = _load(tmp_path / 'annotations' / 'instances_val.json')
    odgt = _load_odgt(tmp_path / 'annotations' / 'annotation_val.odgt')
    cats = [a['category_id'] for a in coco['annotations']]
    assert set(cats) == {1, 2, 3, 4}
    assert [c['name'] for c in coco['categories']] == list(classes)
    n_person = sum(b['tag'] == 'person' for r in odgt for b in r['gtboxes'])
    assert n_person == cats.count(1) == summary['val']['odgt_boxes']
    assert {b['tag'] for r in odgt for b in r['gtboxes']} <= {'person', 'mask'}
    assert summary['val']['boxes_per_class'] == {
        c: cats.count(i + 1) for i, c in enumerate(classes)}
    ds = CocoDataset(data_root=str(tmp_path),
                     ann_file='annotations/instances_val.json',
                     data_prefix=dict(img='images/'),
                     metainfo=dict(classes=classes),
                     pipeline=_pipeline(with_mask=True))
    labels = np.concatenate(
        [ds[i]['data_samples'].gt_instances.labels.numpy()
         for i in range(len(ds))])
    assert sorted(labels.tolist()) == sorted(c - 1 for c in cats)


# ---------------------------------------------------------------- determinism
def test_determinism(tmp_path):
    a = _tree_of(tmp_path / 'a', seed=3)
    b = _tree_of(tmp_path / 'b', seed=3)
    assert a.keys() == b.keys()
    assert len([k for k in a if k.endswith('.png')]) == 9
    for k in a:
        assert a[k] == b[k], k
    c = _tree_of(tmp_path / 'c', seed=4)
    assert c.keys() == a.keys()
    for k in ('annotations/instances_train.json',
              'annotations/annotation_val.odgt', 'images/train/000000.png',
              'images/val/000003.png'):
        assert c[k] != a[k], k
    # per-image sub-seeds: a split does not depend on the other split's size
    d = _tree_of(tmp_path / 'd', seed=3, num_val=2)
    for k, v in a.items():
        if k.startswith(('images/train/', 'annotations/')) and 'train' in k:
            assert d[k] == v, k
    assert d['images/val/000001.png'] == a['images/val/000001.png']


def _tree_of(root: Path, seed: int, **kw) -> dict:
    generate_synthetic_crowd(root, seed=seed, **{**SMALL, **kw})
    return _tree(root)


# ---------------------------------------------------------------- safety
def test_refuses_non_empty_dir_and_keeps_user_files(tmp_path):
    out = tmp_path / 'ds'
    out.mkdir()
    (out / 'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='not empty'):
        generate_synthetic_crowd(out, **SMALL)
    assert sorted(os.listdir(out)) == ['notes.txt'], 'nothing written'

    generate_synthetic_crowd(out, **SMALL, overwrite=True)
    (out / 'annotations' / 'mine.json').write_text('{}')
    with pytest.raises(FileExistsError):
        generate_synthetic_crowd(out, **SMALL)
    generate_synthetic_crowd(out, num_train=2, num_val=1, img_size=96,
                             overwrite=True)
    assert (out / 'notes.txt').read_text() == 'mine'
    assert (out / 'annotations' / 'mine.json').read_text() == '{}'
    # stale images of the larger previous run are gone
    assert sorted(p.name for p in (out / 'images' / 'train').iterdir()) == [
        '000000.jpg', '000000.png', '000001.jpg', '000001.png'
    ]
    assert len(_load(out / 'annotations' /
                     'instances_train.json')['images']) == 2
    # an existing empty dir and a missing nested dir are fine
    (tmp_path / 'empty').mkdir()
    generate_synthetic_crowd(tmp_path / 'empty', num_train=1, num_val=1,
                             img_size=64)
    generate_synthetic_crowd(tmp_path / 'x' / 'y', num_train=1, num_val=1,
                             img_size=64)


@pytest.mark.parametrize('kwargs', [
    dict(img_size=32), dict(img_size=100.0), dict(num_train=-1),
    dict(num_train=0, num_val=0), dict(num_classes=0), dict(num_classes=5),
    dict(objects_per_image=(5, 3)), dict(objects_per_image=(0, 3)),
    dict(objects_per_image=4), dict(crowd_ratio=1.5), dict(seed=-1),
    dict(min_visible=1.0)
])
def test_invalid_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_synthetic_crowd(tmp_path / 'out', **{**SMALL, **kwargs})
    assert not (tmp_path / 'out').exists()


# ---------------------------------------------------------------- CLI
def test_cli(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location('gen_synthetic_crowd', CLI)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = tmp_path / 'cli'
    cli.main(['--out-dir', str(out), '--num-train', '3', '--num-val', '2',
              '--img-size', '64', '--seed', '1'])
    text = capsys.readouterr().out
    assert 'train' in text and 'val' in text and 'crowd fraction' in text
    assert (out / 'annotations' / 'instances_val.json').is_file()
    with pytest.raises(SystemExit) as exc:
        cli.main(['--out-dir', str(out), '--img-size', '16', '--overwrite'])
    assert str(exc.value.code).startswith('error: img_size')

    # as a process: one-line error, no traceback, non-zero exit
    res = subprocess.run(
        [sys.executable, str(CLI), '--out-dir', str(out)],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert 'Traceback' not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error:')
    assert 'not empty' in lines[0]
