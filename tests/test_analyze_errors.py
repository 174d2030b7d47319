"""tools/analyze_errors.py, the error explanations and the HTML report."""
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdet_odam.apis.output_files import OutputConflictError
from mmdet_odam.evaluation.error_analysis import (ERROR_TYPES, ErrorCounts,
                                                  box_iou,
                                                  classify_detections)
from mmdet_odam.visualization.report import ErrorReport, crop_window

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs' / 'fcos' / 'fcos_tiny_synthetic-crowd.py'
CHECKPOINT = REPO / 'checkpoints' / 'fcos_tiny_synthetic-crowd.pth'
TOOL = REPO / 'tools' / 'analyze_errors.py'


class _PageCounts(HTMLParser):
    """The overview table's ``data-count`` per type, and the cards' types,
    read from the page's DOM attributes."""

    def __init__(self):
        super().__init__()
        self.row = None
        self.counts, self.cards = {}, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'tr' and 'data-type' in attrs:
            self.row = attrs['data-type']
        if tag == 'td' and attrs.get('class') == 'count' and self.row:
            self.counts[self.row] = int(attrs['data-count'])
        if tag == 'div' and attrs.get('class') == 'card':
            self.cards.append(attrs['data-type'])


def _page_counts(path: Path) -> _PageCounts:
    parser = _PageCounts()
    parser.feed(path.read_text(encoding='utf-8'))
    return parser


def _records(heat: np.ndarray) -> list:
    """One record of every kind, as explain_image_errors makes them."""
    base = dict(label=0, class_name='person', score=0.8, iou=0.3,
                box=[10., 10., 30., 50.], gt_box=[12., 8., 40., 52.],
                panels=[('this detection: x2 map', heat, 'det')],
                attribute_maps=dict(score=heat, x2=heat), note='n')
    recs = [dict(base, kind=k, det=i) for i, k in enumerate(ERROR_TYPES)]
    recs[-1] = dict(kind='missed', det=-1, label=0, class_name='person',
                    gt_box=[50., 50., 60., 60.], panels=[], note='none',
                    cause='no candidate')
    return recs


def test_report_counts_json_table_and_page_agree(tmp_path):
    image = np.full((64, 80, 3), 120, np.uint8)
    heat = np.zeros((64, 80), np.float32)
    heat[20:30, 15:25] = 1.
    counts = ErrorCounts(class_names=('person', ))
    # two images: the second adds a second duplicate (beyond --max-cards 1)
    first = classify_detections([[0, 0, 10, 10], [0, 0, 10, 9]], [.9, .8],
                                [0, 0], [[0, 0, 10, 10]], [0])
    counts.add(first, [0, 0], [0])
    counts.add(first, [0, 0], [0])
    report = ErrorReport(str(tmp_path), ('person', ), max_cards=1)
    report.check()
    report.add_image(image, 'a.png', _records(heat))
    report.add_image(image, 'b.png', [dict(_records(heat)[4])])
    report.finish(counts.summary(), dict(config='x.py'))
    data = json.loads((tmp_path / 'errors.json').read_text())
    assert data['counts'] == dict(dict.fromkeys(ERROR_TYPES, 0), correct=2,
                                  duplicate=2)
    assert data['total'] == 4 and data['num_errors'] == 2
    assert data['missed_causes'] == {'no candidate': 1}
    assert 'data-cause="no candidate" data-count="1"' in \
        (tmp_path / 'index.html').read_text()
    # one card per error kind (correct has none; max_cards=1)
    assert sorted(c['type'] for c in data['cards']) == sorted(ERROR_TYPES[1:])
    page = _page_counts(tmp_path / 'index.html')
    assert page.counts == data['counts']
    assert sorted(page.cards) == sorted(c['type'] for c in data['cards'])
    table = (tmp_path / 'summary.md').read_text()
    for t in ERROR_TYPES:
        row = next(r for r in table.splitlines() if r.startswith(f'| {t} '))
        assert int(row.split('|')[2]) == data['counts'][t]
    for card in data['cards']:
        for name in [card['crop']] + [p['file'] for p in card['panels']] + \
                list(card['attribute_maps'].values()):
            assert (tmp_path / name).is_file(), name
    # a re-run with fewer cards removes the stale ones it wrote
    report = ErrorReport(str(tmp_path), ('person', ), max_cards=1)
    report.add_image(image, 'a.png', _records(heat)[:2])
    report.finish(counts.summary(), {})
    assert not (tmp_path / 'cards' / 'e0004_crop.png').exists()
    assert (tmp_path / 'cards' / 'e0001_crop.png').exists()
    # someone else's page is never replaced
    (tmp_path / 'index.html').write_text('mine')
    with pytest.raises(OutputConflictError, match='index.html'):
        ErrorReport(str(tmp_path)).check()


def test_crop_window_contains_the_boxes():
    window = crop_window([[10, 20, 20, 60], [15, 25, 30, 50]], (100, 200))
    x0, y0, x1, y1 = window
    assert x0 <= 10 and y0 <= 20 and x1 >= 30 and y1 >= 60
    assert (y1 - y0) / (x1 - x0) <= 1.25 + 1e-6  # wide enough for a legend
    assert crop_window([[0, 0, 300, 300]], (100, 200)) == (0, 0, 200, 100)


def test_odam_nms_verdict_follows_algorithm_1():
    from mmdet_odam.apis.error_explanations import odam_nms_verdict
    blob = torch.zeros(10, 10)
    blob[2:5, 2:5] = 1
    other = torch.zeros(10, 10)
    other[6:9, 6:9] = 1
    # low IoU (1/7), identical maps (cosine 1 > 0.8): the same object
    same = odam_nms_verdict([0, 0, 10, 10], [5, 0, 15, 10], blob, blob)
    assert same['iou'] == pytest.approx(50 / 150) and same['removed']
    assert same['correlation'] == pytest.approx(1.)
    # high IoU, disjoint maps (cosine 0 < 0.2): two objects, kept
    apart = odam_nms_verdict([0, 0, 10, 10], [0, 0, 10, 9], blob, other)
    assert apart['correlation'] == 0 and not apart['removed']
    assert 'different objects' in apart['rule']
    # an empty map: IoU alone (0.9 > 0.5: removed)
    empty = odam_nms_verdict([0, 0, 10, 10], [0, 0, 10, 9], blob,
                             torch.zeros(10, 10))
    assert empty['removed'] and 'alone' in empty['rule']


@pytest.fixture(scope='module')
def model():
    from mmdet_odam.apis import init_explained_detector
    return init_explained_detector(str(CONFIG), str(CHECKPOINT))


def test_explained_errors_of_a_constructed_ground_truth(model,
                                                        synthetic_crowd_root):
    """GT made from the model's own detections: all correct, except one box
    widened 2.5 times (a localization error whose x2 is off by 1.5 widths)
    and one object where nothing is detected (missed)."""
    import mmcv

    from mmdet_odam.apis import explain
    from mmdet_odam.apis.error_explanations import explain_image_errors
    image = mmcv.imread(str(synthetic_crowd_root / 'images' / 'val' /
                            '000000.png'))
    sample = explain(model, image, targets=('score', ), score_thr=0.3)
    dets = sample.pred_instances.bboxes.numpy()
    assert len(dets) >= 2
    order = np.argsort(-sample.pred_instances.scores.numpy(), kind='stable')
    widened = order[0]
    gt = dets.copy()
    width = dets[widened, 2] - dets[widened, 0]
    gt[widened, 2] = dets[widened, 0] + 2.5 * width
    # an empty spot: a small box that no detection overlaps
    h, w = image.shape[:2]
    spot = next(np.array([[x, y, x + 8, y + 8]], np.float32)
                for y in range(0, h - 8, 4) for x in range(0, w - 8, 4)
                if box_iou(np.array([[x, y, x + 8, y + 8]]), dets).max() == 0)
    gt = np.concatenate([gt, spot])
    if box_iou(gt[widened:widened + 1], dets).max() >= 0.5:
        pytest.skip('the widened box still matches another detection')
    errors, _, records = explain_image_errors(
        model, image, gt, np.zeros(len(gt), np.int64), class_names=('p', ))
    kinds = [r['kind'] for r in records]
    assert kinds.count('correct') == len(dets) - 1
    assert kinds.count('localization') == 1 and kinds.count('missed') == 1
    loc = next(r for r in records if r['kind'] == 'localization')
    assert loc['extent_error']['x2'] == pytest.approx(-1.5 * width, abs=0.2)
    assert loc['sides_off'] == ['x2']
    assert loc['iou'] == pytest.approx(0.4, abs=1e-3)
    titles = [p[0] for p in loc['panels']]
    assert titles == ['this detection: x2 map']  # nobody else found it
    assert 'cuts into the object' in loc['note']
    assert set(loc['attribute_maps']) == {'score', 'x1', 'y1', 'x2', 'y2',
                                          'combined'}
    for _, heat, _ in loc['panels']:
        assert heat.shape == (h, w) and 0 <= heat.min() <= heat.max() <= 1


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          cwd=str(REPO))


def _tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location('_analyze_errors', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_refuses_bad_input_in_one_line(tmp_path, capsys):
    tool = _tool()
    assert tool.main([str(CONFIG), str(CHECKPOINT), '--out-dir',
                      str(tmp_path / 'out'), '--bg-iou', '0.7']) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'bg-iou' in err
    assert not (tmp_path / 'out').exists()
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'errors.json').write_text('{}')
    assert tool.main([str(CONFIG), str(CHECKPOINT), '--out-dir',
                      str(tmp_path / 'other')]) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'errors.json' in err
    assert (tmp_path / 'other' / 'errors.json').read_text() == '{}'
    assert tool.main([str(CONFIG), str(tmp_path / 'none.pth'), '--out-dir',
                      str(tmp_path / 'out')]) == 1
    assert 'checkpoint' in capsys.readouterr().err


def test_cli_on_the_synthetic_val_split(tmp_path, synthetic_crowd_root):
    from pycocotools.coco import COCO
    out = tmp_path / 'report'
    res = _run(CONFIG, CHECKPOINT, '--data-root', synthetic_crowd_root,
               '--num-images', 3, '--out-dir', out, '--device', 'cpu')
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads((out / 'errors.json').read_text())
    assert data['num_images'] == 3
    page = _page_counts(out / 'index.html')
    assert page.counts == data['counts']
    # every GT object of the 3 images is correct, covered or missed once:
    # objects (pycocotools) = correct + missed + covered
    coco = COCO(str(synthetic_crowd_root / 'annotations' /
                    'instances_val.json'))
    ids = sorted(coco.getImgIds())[:3]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=ids))
    objects = sum(1 for a in anns if not a.get('iscrowd', 0) and
                  not a.get('ignore', 0))
    covered = data['counts']['localization'] + \
        data['counts']['classification'] + data['counts']['both']
    assert data['counts']['correct'] + data['counts']['missed'] <= objects
    assert data['counts']['correct'] + data['counts']['missed'] + covered \
        >= objects
    assert data['counts']['correct'] > 0
    assert sum(data['missed_causes'].values()) == data['counts']['missed']
    assert '| correct |' in res.stdout


def test_classification_error_rescored_for_the_true_class():
    """A 3-class random FCOS: the GT box of the top detection says another
    class. The card holds the true class's score map on the detection's own
    candidate, whose score equals that location's raw true-class score
    (sigmoid(cls) * sigmoid(centerness) from the head's outputs)."""
    from test_candidates import build_multiclass, locate, raw_candidates

    from mmdet_odam.apis.error_explanations import explain_image_errors
    from mmdet_odam.apis.explain import preprocess
    model = build_multiclass('fcos')
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    image[20:70, 30:60] = (40, 200, 40)
    image[40:90, 70:110] = (200, 40, 200)
    errors, dets, records = explain_image_errors(
        model, image, np.zeros((0, 4)), [], class_names=('a', 'b', 'c'))
    assert len(dets['det_scores']) and set(errors.det_type) == {'background'}
    top = int(np.argmax(dets['det_scores']))
    box, pred = dets['det_bboxes'][top], int(dets['det_labels'][top])
    true = (pred + 1) % 3
    errors, dets, records = explain_image_errors(
        model, image, box[None], [true], class_names=('a', 'b', 'c'))
    rec = next(r for r in records if r['det'] == top)
    assert rec['kind'] == 'classification'
    assert rec['true_class'] == 'abc'[true]
    inputs, samples = preprocess(model, image)
    _, _, scores, boxes = raw_candidates('fcos', model, inputs, samples)
    where = locate(boxes, scores, pred, torch.as_tensor(box),
                   float(dets['det_scores'][top]))
    assert rec['true_score'] == pytest.approx(float(scores[where, true]),
                                              abs=1e-5)
    titles = [p[0] for p in rec['panels']]
    assert titles == ["predicted 'abc'[pred]: score map".replace(
        "'abc'[pred]", f"'{'abc'[pred]}'"), f"true '{'abc'[true]}': score map"]
    assert not np.allclose(rec['panels'][0][1], rec['panels'][1][1])


def test_missed_object_gets_the_detectors_best_candidate(model,
                                                         synthetic_crowd_root):
    """A GT object placed on a detected person but called missed by a
    stricter t_f (0.99): its best candidate is that person's detection
    (MatchedCandidates picks the best-scoring candidate with IoU >= 0.5)."""
    import mmcv

    from mmdet_odam.apis import explain
    from mmdet_odam.apis.error_explanations import explain_image_errors
    image = mmcv.imread(str(synthetic_crowd_root / 'images' / 'val' /
                            '000000.png'))
    sample = explain(model, image, targets=('score', ), score_thr=0.3)
    top = int(sample.pred_instances.scores.argmax())
    box = sample.pred_instances.bboxes[top].numpy().copy()
    gt = box + np.array([0, 0, 0, 0.2 * (box[3] - box[1])], np.float32)
    _, _, records = explain_image_errors(model, image, gt[None], [0],
                                         fg_iou=0.99, bg_iou=0.99)
    missed = [r for r in records if r['kind'] == 'missed']
    assert len(missed) == 1
    rec = missed[0]
    assert rec['iou'] >= 0.5
    assert rec['iou'] == pytest.approx(
        float(box_iou([rec['box']], gt[None])[0, 0]), abs=2e-3)
    assert rec['score'] >= float(sample.pred_instances.scores[top]) - 1e-5
    assert ('NMS removed it' in rec['note']) == (rec['score'] >= 0.3)
    assert rec['cause'] == ('removed by NMS' if rec['score'] >= 0.3 else
                            'score below the threshold')
    assert [p[0] for p in rec['panels']] == ['best candidate: score map',
                                             'best candidate: combined map']
