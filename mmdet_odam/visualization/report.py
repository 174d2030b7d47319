"""A self-contained HTML report of a detector's errors and their
explanations (``tools/analyze_errors.py``).

One folder, opened offline from disk (no server, no CDN: CSS and JavaScript
are inline, pictures are PNG files beside the page)::

    out_dir/index.html              overview, error cards, filters, sorting
    out_dir/errors.json             settings, counts (overall, per class),
                                    every card's numbers and files
    out_dir/summary.md              the error-type table (Markdown)
    out_dir/plots/overview.png      counts per error type
    out_dir/plots/<type>.png        score / IoU histogram of each type
    out_dir/cards/e<id>_crop.png    the image around the error, boxes drawn
    out_dir/cards/e<id>_p<k>.png    the maps that explain it (legend band)
    out_dir/cards/e<id>_<target>.png  every attribute map, whole image
    out_dir/.mmdet-odam-manifest.json  the files above that it wrote

Files are written atomically and only over the tool's own earlier files
(:class:`mmdet_odam.apis.output_files.OutputGroup`); cards of an earlier run
that this run does not write again are removed if unchanged.

Boxes: red the detection (or a missed object's best candidate), green the
ground truth, blue the correct detection it is compared with.
"""
import html
import io
import json
import re
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from ..evaluation.error_analysis import (ERROR_TYPES, ERRORS,
                                         format_error_table)
from .heatmap_overlay import (add_colorbar, check_colormap, draw_box,
                              encode_rgb_png, fit_tile, overlay_heatmap)

BOX_COLOURS = dict(det=(255, 64, 64), gt=(40, 200, 40), ref=(64, 128, 255))
CARD_SIDE = 224  # the crop's longest side in the report, pixels
TYPE_HELP = dict(
    correct='IoU >= t_f with an object of its class not found before',
    localization='right class, IoU in [t_b, t_f) with the object',
    classification='IoU >= t_f with an object of another class',
    both='wrong class and IoU in [t_b, t_f)',
    duplicate='a higher-scored detection already found this object',
    background='IoU < t_b with every object',
    missed='an object no detection found (nor an error above covers)')
_OWN = re.compile(r'^(index\.html|errors\.json|summary\.md|'
                  r'plots/[a-z]+\.png|cards/e\d{4,}_[A-Za-z0-9]+\.png)$')


def crop_window(boxes: Sequence[Sequence[float]], shape, margin: float = 0.3,
                min_side: int = 24, max_aspect: float = 1.25) -> tuple:
    """(x0, y0, x1, y1) integer window around boxes, grown by ``margin`` of
    their extent on each side (at least ``min_side`` pixels wide/high, and
    the narrow side grown to at least 1 / ``max_aspect`` of the long one, so
    that a legend fits under it), inside an image of ``shape`` (H, W)."""
    h, w = shape[:2]
    arr = np.asarray(boxes, np.float64).reshape(-1, 4)
    x0, y0 = arr[:, 0].min(), arr[:, 1].min()
    x1, y1 = arr[:, 2].max(), arr[:, 3].max()
    width = (1 + 2 * margin) * (x1 - x0)
    height = (1 + 2 * margin) * (y1 - y0)
    width, height = max(width, height / max_aspect, min_side), max(
        height, width / max_aspect, min_side)
    def place(lo: float, hi: float, size: float, limit: int) -> tuple:
        """[start, end) of ``size`` centred on [lo, hi], shifted inside
        [0, limit) (clipped if larger)."""
        size = min(size, limit)
        start = (lo + hi) / 2 - size / 2
        start = min(max(start, 0), limit - size)
        return int(np.floor(start)), int(min(limit, np.ceil(start + size)))

    x0, x1 = place(x0, x1, width, w)
    y0, y1 = place(y0, y1, height, h)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


class ErrorReport:
    """Writes the report folder (module docstring) card by card.

    Args:
        out_dir (str): Report folder.
        class_names (Sequence[str]): Label names.
        cmap (str): matplotlib colormap of the maps.
        max_cards (int): Cards per error type (the counts cover all).
        protected (Sequence[str]): Paths never written (inputs).
        overwrite (bool): Replace files there that the tool did not write.
    """

    def __init__(self, out_dir: str, class_names: Sequence[str] = (),
                 cmap: str = 'jet', max_cards: int = 50,
                 protected: Sequence[str] = (),
                 overwrite: bool = False) -> None:
        from ..apis.output_files import OutputGroup
        self.cmap = check_colormap(cmap)
        if max_cards < 0:
            raise ValueError(f'max_cards must be >= 0, got {max_cards}')
        self.class_names = tuple(class_names)
        self.max_cards = int(max_cards)
        self.group = OutputGroup(out_dir, '', lambda n: bool(_OWN.match(n)),
                                 protected=protected, overwrite=overwrite)
        self.cards: List[dict] = []
        self.values: Dict[str, List[tuple]] = {t: [] for t in ERROR_TYPES}
        self.shown = dict.fromkeys(ERRORS, 0)
        self.missed_causes: Dict[str, int] = {}  # over all missed objects

    def check(self) -> None:
        """Raise :class:`~mmdet_odam.apis.output_files.OutputConflictError`
        now (before heavy work) if the page, json or table can't be
        written."""
        self.group.check(['index.html', 'errors.json', 'summary.md',
                          'plots/overview.png'])

    # -- cards ---------------------------------------------------------------
    def _write_png(self, name: str, rgb: np.ndarray) -> str:
        png = encode_rgb_png(rgb)
        self.group.write(name, lambda f: f.write(png))
        return name

    def _crop_picture(self, image_bgr: np.ndarray, window: tuple,
                      heat: Optional[np.ndarray], rec: dict,
                      box_keys: Sequence[str]) -> np.ndarray:
        """The window of the image (with ``heat`` blended when given),
        scaled to :data:`CARD_SIDE`, with the record's boxes drawn."""
        x0, y0, x1, y1 = window
        crop = np.ascontiguousarray(image_bgr[y0:y1, x0:x1])
        if heat is None:
            rgb = np.ascontiguousarray(crop[..., ::-1])
        else:
            rgb = overlay_heatmap(crop, heat[y0:y1, x0:x1], cmap=self.cmap)
        scale = CARD_SIDE / max(x1 - x0, y1 - y0)
        size = (max(1, round((x1 - x0) * scale)),
                max(1, round((y1 - y0) * scale)))
        rgb = np.ascontiguousarray(fit_tile(rgb, size))
        for key, colour in (('gt_box', 'gt'), ('ref_box', 'ref'),
                            ('box', 'det')):
            if key in rec and (key == 'gt_box' or colour in box_keys):
                bx = rec[key]
                scaled = [(bx[0] - x0) * scale, (bx[1] - y0) * scale,
                          (bx[2] - x0) * scale, (bx[3] - y0) * scale]
                draw_box(rgb, scaled, BOX_COLOURS[colour])
                # a second, inner line: colours readable on a small crop
                p1 = tuple(int(round(v)) + 1 for v in scaled[:2])
                p2 = tuple(int(round(v)) - 1 for v in scaled[2:])
                cv2.rectangle(rgb, p1, p2, BOX_COLOURS[colour], 1)
        return rgb

    def add_image(self, image_bgr: np.ndarray, image_name: str,
                  records: Sequence[dict]) -> None:
        """Count one image's records and write the cards of its errors."""
        for rec in records:
            kind = rec['kind']
            self.values[kind].append((rec.get('score', 0.),
                                      rec.get('iou', 0.)))
            if kind == 'missed':
                cause = rec.get('cause', 'unknown')
                self.missed_causes[cause] = self.missed_causes.get(cause,
                                                                   0) + 1
            if kind == 'correct' or self.shown[kind] >= self.max_cards:
                continue
            self.shown[kind] += 1
            self.cards.append(self._card(image_bgr, image_name, rec))

    def _card(self, image_bgr: np.ndarray, image_name: str,
              rec: dict) -> dict:
        cid = f'e{len(self.cards) + 1:04d}'
        boxes = [rec[k] for k in ('box', 'gt_box', 'ref_box') if k in rec]
        window = crop_window(boxes, image_bgr.shape)
        files = dict(crop=self._write_png(
            f'cards/{cid}_crop.png',
            self._crop_picture(image_bgr, window, None, rec,
                               ('det', 'ref'))))
        panels = []
        for k, (title, heat, which) in enumerate(rec.get('panels', ())):
            pic = self._crop_picture(image_bgr, window, heat, rec, (which, ))
            panels.append(dict(title=title, file=self._write_png(
                f'cards/{cid}_p{k}.png',
                # the band names the map ('x2 map'); the caption says whose
                add_colorbar(pic, self.cmap, title.split(': ')[-1]))))
        attribute = {}
        for target, heat in rec.get('attribute_maps', {}).items():
            rgb = overlay_heatmap(image_bgr, heat, box=rec.get('box'),
                                  cmap=self.cmap)
            attribute[target] = self._write_png(
                f'cards/{cid}_{target}.png',
                add_colorbar(rgb, self.cmap, f'{target} map'))
        numbers = {k: rec[k] for k in (
            'score', 'iou', 'extent_error', 'sides_off', 'pair_iou',
            'correlation', 'odam_nms_removes', 'true_score', 'ref_score')
            if k in rec}
        return dict(id=cid, type=rec['kind'], image=image_name,
                    det_index=rec.get('det', -1),
                    class_name=rec['class_name'],
                    true_class=rec.get('true_class'),
                    box=rec.get('box'), gt_box=rec.get('gt_box'),
                    ref_box=rec.get('ref_box'), note=rec.get('note', ''),
                    numbers=numbers, crop=files['crop'], panels=panels,
                    attribute_maps=attribute)

    # -- overview ------------------------------------------------------------
    def _plots(self, summary: dict) -> Dict[str, str]:
        # Figure without pyplot: no backend of the process is touched
        from matplotlib.figure import Figure
        files = {}
        fig = Figure(figsize=(6.4, 2.8))
        ax = fig.subplots()
        counts = [summary['counts'][t] for t in ERROR_TYPES]
        colours = ['#4caf50'] + ['#e57373'] * (len(ERROR_TYPES) - 1)
        bars = ax.bar(ERROR_TYPES, counts, color=colours)
        ax.bar_label(bars, fontsize=8)
        ax.set_ylabel('count')
        ax.set_title(f"{summary['num_images']} images, "
                     f"{summary['num_errors']} errors")
        ax.tick_params(axis='x', labelsize=8)
        fig.tight_layout()
        files['overview'] = self._save_figure(fig, 'plots/overview.png')
        for kind in ERROR_TYPES:
            vals = np.array(self.values[kind], np.float64).reshape(-1, 2)
            fig = Figure(figsize=(5.2, 2.0))
            axes = fig.subplots(1, 2)
            what = ('best candidate score' if kind == 'missed' else 'score',
                    'IoU with its object' if kind != 'background' else
                    'IoU with the nearest object')
            for ax, column, label in zip(axes, vals.T if len(vals) else
                                         ([], []), what):
                ax.hist(column, bins=10, range=(0, 1), color='#7986cb')
                ax.set_xlabel(label, fontsize=8)
                ax.tick_params(labelsize=7)
            axes[0].set_ylabel('count', fontsize=8)
            fig.suptitle(f'{kind} ({len(vals)})', fontsize=9)
            fig.tight_layout()
            files[kind] = self._save_figure(fig, f'plots/{kind}.png')
        return files

    def _save_figure(self, fig, name: str) -> str:
        buffer = io.BytesIO()
        fig.savefig(buffer, format='png', dpi=100)
        data = buffer.getvalue()
        self.group.write(name, lambda f: f.write(data))
        return name

    def finish(self, summary: dict, settings: dict) -> dict:
        """Write plots, json, table and page; remove stale own cards.

        Args:
            summary (dict): :meth:`ErrorCounts.summary
                <mmdet_odam.evaluation.error_analysis.ErrorCounts.summary>`.
            settings (dict): Shown and stored (config, thresholds...).

        Returns:
            dict: Paths (``index``, ``json``, ``table``) and ``kept`` (stale
            files left because they changed since).
        """
        plots = self._plots(summary)
        table = format_error_table(summary)
        report = dict(settings=settings, error_types=list(ERROR_TYPES),
                      counts=summary['counts'], share=summary['share'],
                      error_share=summary['error_share'],
                      per_class=summary['per_class'],
                      num_images=summary['num_images'],
                      total=summary['total'],
                      num_errors=summary['num_errors'],
                      missed_causes=dict(sorted(self.missed_causes.items())),
                      cards_per_type=dict(self.shown), cards=self.cards,
                      plots=plots, table=table)
        text = json.dumps(report, indent=1, default=float)
        self.group.write('errors.json', lambda f: f.write(text.encode()))
        self.group.write('summary.md',
                         lambda f: f.write((table + '\n').encode()))
        page = render_page(report)
        self.group.write('index.html', lambda f: f.write(page.encode()))
        kept = self.group.finish()
        return dict(index=self.group.path('index.html'),
                    json=self.group.path('errors.json'),
                    table=self.group.path('summary.md'), kept=kept)


# -- HTML --------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{margin-bottom:.2em} .meta{color:#555;font-size:.9em}
table{border-collapse:collapse;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
tr.error-row td:first-child{color:#b71c1c}
.plots{display:flex;flex-wrap:wrap;gap:.5em}
.plots figure{margin:0} .plots img{width:300px}
.controls{position:sticky;top:0;background:#fff;padding:.5em 0;
 border-bottom:1px solid #ddd;z-index:1}
.controls label{margin-right:1em}
#cards{display:flex;flex-wrap:wrap;gap:1em;margin-top:1em}
.card{border:1px solid #ccc;border-radius:6px;padding:.6em;
 width:min(100%,980px)}
.card h3{margin:.1em 0 .4em;font-size:1em}
.card .tag{display:inline-block;padding:0 .5em;border-radius:3px;
 background:#ffebee;color:#b71c1c;margin-right:.4em}
.card .pics{display:flex;flex-wrap:wrap;gap:.4em;align-items:flex-start}
.card figure{margin:0;font-size:.75em;color:#444}
.card figure img{display:block;max-width:240px}
.card dl{display:grid;grid-template-columns:max-content auto;gap:0 .8em;
 font-size:.85em;margin:.4em 0}
.card dt{color:#666} .card dd{margin:0}
.note{font-size:.9em;margin:.3em 0} .links{font-size:.8em}
.legend span{display:inline-block;width:1em;height:.7em;margin:0 .3em}
"""

_JS = """
(function(){
  var cards=Array.prototype.slice.call(document.querySelectorAll('.card'));
  var box=document.getElementById('cards');
  var type=document.getElementById('filter-type');
  var cls=document.getElementById('filter-class');
  var sort=document.getElementById('sort-by');
  var shown=document.getElementById('shown');
  function key(c,k){var v=c.dataset[k];var n=parseFloat(v);
    return isNaN(n)?v:n;}
  function update(){
    var k=sort.value.split(':'),field=k[0],dir=k[1]==='desc'?-1:1;
    cards.sort(function(a,b){var x=key(a,field),y=key(b,field);
      return x<y?-dir:x>y?dir:0;});
    var n=0;
    cards.forEach(function(c){
      var ok=(type.value==='all'||c.dataset.type===type.value)&&
             (cls.value==='all'||c.dataset.cls===cls.value);
      c.hidden=!ok; if(ok){n+=1;} box.appendChild(c);});
    shown.textContent=n+' of '+cards.length+' cards shown';
    shown.dataset.count=n;
  }
  [type,cls,sort].forEach(function(e){e.addEventListener('change',update);});
  Array.prototype.forEach.call(document.querySelectorAll('tr[data-type]'),
    function(row){row.addEventListener('click',function(){
      type.value=row.dataset.type==='correct'?'all':row.dataset.type;
      update();});});
  update();
})();
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value) -> str:
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, float):
        return f'{value:.3f}'
    if isinstance(value, dict):
        return ', '.join(f'{k} {v:+.0f} px' for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ', '.join(map(str, value))
    return str(value)


_NUMBER_NAMES = dict(
    score='score', iou='IoU with the object', extent_error='extent error '
    '(+ beyond the object)', sides_off='sides off', pair_iou='IoU with the '
    'correct detection', correlation='map correlation (cosine)',
    odam_nms_removes='Odam-NMS removes it', true_score='true-class score',
    ref_score='correct detection score')


def _card_html(card: dict) -> str:
    numbers = card['numbers']
    cls = card['class_name']
    title = f'{card["type"]}: {cls}'
    if card.get('true_class') and card['true_class'] != cls:
        title += f' (true: {card["true_class"]})'
    where = 'ground-truth object' if card['det_index'] < 0 else \
        f'detection #{card["det_index"]}'
    pics = [f'<figure><img src="{_esc(card["crop"])}" alt="crop" '
            'loading="lazy"><figcaption>image, boxes</figcaption></figure>']
    for panel in card['panels']:
        pics.append(f'<figure><img src="{_esc(panel["file"])}" '
                    f'alt="{_esc(panel["title"])}" loading="lazy">'
                    f'<figcaption>{_esc(panel["title"])}</figcaption>'
                    '</figure>')
    dl = ''.join(f'<dt>{_esc(_NUMBER_NAMES.get(k, k))}</dt>'
                 f'<dd>{_esc(_fmt(v))}</dd>' for k, v in numbers.items())
    links = ' '.join(f'<a href="{_esc(f)}">{_esc(t)}</a>'
                     for t, f in card['attribute_maps'].items())
    return (
        f'<div class="card" id="{_esc(card["id"])}" '
        f'data-type="{_esc(card["type"])}" data-cls="{_esc(cls)}" '
        f'data-score="{numbers.get("score", 0):.4f}" '
        f'data-iou="{numbers.get("iou", 0):.4f}" '
        f'data-image="{_esc(card["image"])}">'
        f'<h3><span class="tag">{_esc(card["type"])}</span>{_esc(title)} '
        f'<small>{_esc(card["image"])} '
        f'{where}</small></h3>'
        f'<div class="pics">{"".join(pics)}</div>'
        f'<p class="note">{_esc(card["note"])}</p><dl>{dl}</dl>'
        + (f'<div class="links">all attribute maps: {links}</div>'
           if links else '') + '</div>')


def render_page(report: dict) -> str:
    """The HTML of the report (inline CSS and JavaScript, relative links)."""
    classes = list(report['per_class'])
    head = ''.join(f'<th>{_esc(c)}</th>' for c in classes)
    rows = []
    for t in ERROR_TYPES:
        count = report['counts'][t]
        err = report['error_share'].get(t)
        per = ''.join(f'<td class="class-count" data-cls="{_esc(c)}">'
                      f'{report["per_class"][c][t]}</td>' for c in classes)
        rows.append(
            f'<tr data-type="{t}" class="{"error-row" if t in ERRORS else ""}"'
            f' title="{_esc(TYPE_HELP[t])}"><td>{t}</td>'
            f'<td class="count" data-count="{count}">{count}</td>'
            f'<td>{100 * report["share"][t]:.1f}%</td>'
            f'<td>{"-" if err is None else f"{100 * err:.1f}%"}</td>'
            f'{per}</tr>')
    settings = report['settings']
    meta = ', '.join(f'{_esc(k)}: {_esc(v)}' for k, v in settings.items())
    plots = ''.join(
        f'<figure><img src="{_esc(report["plots"][t])}" alt="{t}">'
        f'</figure>' for t in ERROR_TYPES)
    type_options = ''.join(f'<option value="{t}">{t} '
                           f'({report["cards_per_type"][t]} cards)</option>'
                           for t in ERRORS)
    class_options = ''.join(f'<option value="{_esc(c)}">{_esc(c)}</option>'
                            for c in classes)
    cards = '\n'.join(_card_html(c) for c in report['cards'])
    causes = ', '.join(
        f'<span class="cause" data-cause="{_esc(k)}" data-count="{v}">'
        f'{v} {_esc(k)}</span>' for k, v in report['missed_causes'].items())
    causes = f'<p id="missed-causes">Missed objects, by the detector\'s ' \
        f'best candidate for them: {causes}.</p>' if causes else ''
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Why did my detector fail? Error analysis</title>
<style>{_CSS}</style></head>
<body>
<h1>Why did my detector fail?</h1>
<p class="meta">{meta}</p>
<h2>Error types</h2>
<p class="meta">TIDE-like rules: t_f = foreground IoU, t_b = background IoU
(see <code>mmdet_odam/evaluation/error_analysis.py</code>); share = of all
entries (detections and missed objects). Click a row to filter the cards.</p>
<table id="counts"><thead><tr><th>type</th><th>count</th><th>share</th>
<th>of errors</th>{head}</tr></thead><tbody>
{''.join(rows)}
<tr class="total"><td>total</td><td id="total" data-count="{report['total']}">
{report['total']}</td><td>100%</td>
<td id="num-errors" data-count="{report['num_errors']}">
{report['num_errors']} errors</td>{''.join('<td></td>' for _ in classes)}</tr>
</tbody></table>
{causes}
<img src="{_esc(report['plots']['overview'])}" alt="counts per error type">
<div class="plots">{plots}</div>
<h2>Errors explained</h2>
<p class="legend">Boxes: <span style="background:#ff4040"></span>detection
(missed: best candidate) <span style="background:#28c828"></span>ground truth
<span style="background:#4080ff"></span>correct detection of the same object.
Maps: ODAM, each with its colour bar (0 to 1 of its own peak).</p>
<div class="controls">
<label>type <select id="filter-type"><option value="all">all</option>
{type_options}</select></label>
<label>class <select id="filter-class"><option value="all">all</option>
{class_options}</select></label>
<label>sort by <select id="sort-by">
<option value="score:desc">score, high first</option>
<option value="score:asc">score, low first</option>
<option value="iou:asc">IoU, low first</option>
<option value="iou:desc">IoU, high first</option>
<option value="image:asc">image</option></select></label>
<span id="shown"></span></div>
<div id="cards">
{cards}
</div>
<script>{_JS}</script>
</body></html>
"""


__all__ = ['ErrorReport', 'render_page', 'crop_window', 'BOX_COLOURS']
