"""Read images and write explanations to disk.

Shared by ``tools/explain.py`` and ``tools/demo.py``.

Output of :func:`save_explanation` for an image ``stem``::

    out_dir/<stem>/det<idx:03d>_<target>.png  overlay per detection and map
    out_dir/<stem>/det<idx:03d>_grid.png      all maps of a detection (grid)
    out_dir/<stem>/gallery.png                all detections, one tile each
    out_dir/<stem>.npz                        arrays (see save_explanation)
    out_dir/<stem>/.mmdet-odam-manifest.json  the files above that it wrote

PNGs are RGB; every overlay, grid and gallery has a legend band under it:
the map's name (the gallery: which map its tiles show) and a colour bar from
0 to 1. Files are written atomically and only over the tool's own
earlier files (see :mod:`mmdet_odam.apis.output_files`).

The npz holds ``bboxes`` (N, 4) float32 original-image pixels, ``scores``
(N, ), ``labels`` (N, ), ``targets`` (T, ) str, and the maps in a compact
form that plain numpy reads (:func:`load_heatmaps_npz` does it): each map,
in [0, 1] on the original image, is cropped to the bounding box of its
non-zero pixels:

* ``heatmap_shape`` (2, ) int64: (H, W) of the original image;
* ``heatmap_boxes`` (N, T, 4) int64: (y0, x0, y1, x1) of each crop
  ((0, 0, 0, 0) for an all-zero map);
* ``heatmap_values`` (sum of crop sizes, ) float16: the crops, row-major,
  one after another in (detection, target) order.

So memory and file size follow the maps' support, not the photo's size.
With ``dense=True`` (``tools/explain.py --dense-npz``) the npz also holds
``heatmaps`` (N, T, H, W) float16. float16 keeps ~3 significant digits of
values in [0, 1].
"""
import math
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..explainers.heatmap import support_box
from ..visualization import (add_colorbar, check_colormap, encode_rgb_png,
                             fit_tile, make_gallery, overlay_heatmap)
from .output_files import OutputConflictError, OutputGroup

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
GALLERY_TILE_SIZE = 256  # longest side of a gallery tile, pixels
LAYOUTS = ('separate', 'grid', 'both')


# -- inputs ------------------------------------------------------------------
def collect_images(inputs: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Expand image files and directories into a list of image files.

    A directory contributes its own files (not sub-directories) whose
    extension is one of :data:`IMAGE_EXTENSIONS` (any case), sorted by name.
    A file is taken as given, whatever its extension.

    Returns:
        tuple[list[str], list[str]]: Image files (in input order, duplicates
        dropped) and inputs that do not exist.
    """
    images, missing, seen = [], [], set()
    for item in inputs:
        if osp.isdir(item):
            found = sorted(
                osp.join(item, name) for name in os.listdir(item)
                if name.lower().endswith(IMAGE_EXTENSIONS)
                and osp.isfile(osp.join(item, name)))
        elif osp.isfile(item):
            found = [item]
        else:
            missing.append(item)
            continue
        for path in found:
            key = osp.realpath(path)
            if key not in seen:
                seen.add(key)
                images.append(path)
    return images, missing


def unique_stems(paths: Sequence[str]) -> List[str]:
    """Output names: file stems, with ``_2``, ``_3``... appended on clashes
    (``a.png`` and ``a.jpg``, or same names in two directories)."""
    stems, used = [], set()
    for path in paths:
        stem = osp.splitext(osp.basename(path))[0]
        if stem in ('', '.', '..'):
            stem = 'image'
        name, k = stem, 2
        while name in used:
            name, k = f'{stem}_{k}', k + 1
        used.add(name)
        stems.append(name)
    return stems


def read_image(path: str) -> np.ndarray:
    """Read an image as a (H, W, 3) uint8 BGR array.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it cannot be decoded as an image.
    """
    import mmcv
    if not osp.isfile(path):
        raise FileNotFoundError(f'image not found: {path}')
    try:
        img = mmcv.imread(path, flag='color', channel_order='bgr')
    except Exception as e:  # decoder errors vary by backend
        raise ValueError(f'cannot read image {path}: {e}') from None
    if img is None or img.size == 0:
        raise ValueError(f'cannot read image {path} (corrupt or not an '
                         'image)')
    return img


# -- outputs -----------------------------------------------------------------
def box_energy_fraction(heatmap: np.ndarray, box: Sequence[float]) -> float:
    """Share of a map's energy (sum of its values) inside a box.

    A pixel (column x, row y) counts as inside when its centre
    (x + 0.5, y + 0.5) lies in [x1, x2] x [y1, y2]. Returns NaN for an
    all-zero map.
    """
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.ndim != 2:
        raise ValueError(f'heatmap must be (H, W), got {heatmap.shape}')
    total = float(heatmap.sum())
    if total <= 0:
        return float('nan')
    h, w = heatmap.shape
    x1, y1, x2, y2 = (float(v) for v in box)
    c0, c1 = max(0, math.ceil(x1 - 0.5)), min(w, math.floor(x2 - 0.5) + 1)
    r0, r1 = max(0, math.ceil(y1 - 0.5)), min(h, math.floor(y2 - 0.5) + 1)
    if c1 <= c0 or r1 <= r0:
        return 0.
    return float(heatmap[r0:r1, c0:c1].sum()) / total


def _numpy(value, dtype) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value).astype(dtype, copy=False)


def _detection_maps(heatmaps, index: int) -> np.ndarray:
    """(T, H, W) float32 maps of one detection, rendering only it."""
    if hasattr(heatmaps, 'render'):  # HeatMaps
        return heatmaps.render([index])[0].cpu().numpy()
    return _numpy(heatmaps[index], np.float32)


def support_crops(det_maps: np.ndarray
                  ) -> Tuple[List[Tuple[int, int, int, int]], List[np.ndarray]]:
    """One detection's (T, H, W) maps cropped to their non-zero boxes: the
    (y0, x0, y1, x1) of each ((0, 0, 0, 0) when all zero) and the non-empty
    crops as flat float16 arrays."""
    boxes, values = [], []
    for heat in det_maps:
        box = support_box(torch.from_numpy(heat != 0))
        if box is None:
            boxes.append((0, 0, 0, 0))
            continue
        y0, x0, y1, x1 = box
        boxes.append(box)
        values.append(np.clip(heat[y0:y1, x0:x1], 0., 1.).astype(
            np.float16).ravel())
    return boxes, values


def compact_heatmap_arrays(crops: Sequence[tuple], num_targets: int,
                           shape: Tuple[int, int]) -> Dict[str, np.ndarray]:
    """The ``heatmap_*`` arrays of the npz (module docstring) from the
    :func:`support_crops` of every detection, in order."""
    values = [v for _, det_values in crops for v in det_values]
    return dict(
        heatmap_shape=np.array(shape, dtype=np.int64),
        heatmap_boxes=np.array([boxes for boxes, _ in crops],
                               dtype=np.int64).reshape(len(crops),
                                                       num_targets, 4),
        heatmap_values=np.concatenate(values) if values else np.zeros(
            0, np.float16))


def load_heatmaps_npz(data) -> np.ndarray:
    """Dense (N, T, H, W) float32 maps from an npz of
    :func:`save_explanation` (a path or a loaded ``np.load`` object); numpy
    only."""
    if not hasattr(data, 'files'):
        with np.load(data) as loaded:
            return load_heatmaps_npz(loaded)
    if 'heatmap_boxes' not in data.files:  # a dense npz of older versions
        return data['heatmaps'].astype(np.float32)
    boxes, values = data['heatmap_boxes'], data['heatmap_values']
    n, t = boxes.shape[:2]
    out = np.zeros((n, t) + tuple(data['heatmap_shape']), np.float32)
    offset = 0
    for i in range(n):
        for k in range(t):
            y0, x0, y1, x1 = boxes[i, k]
            size = (y1 - y0) * (x1 - x0)
            out[i, k, y0:y1, x0:x1] = values[offset:offset + size].reshape(
                y1 - y0, x1 - x0)
            offset += size
    return out


def _class_name(label: int, class_names: Optional[Sequence[str]]) -> str:
    if class_names and 0 <= label < len(class_names):
        return str(class_names[label])
    return f'class {label}'


def _check_stem(stem: str) -> None:
    if not stem or os.sep in stem or (os.altsep and os.altsep in stem) or \
            stem in ('.', '..'):
        raise ValueError(f'bad output stem {stem!r}')


def explanation_outputs(out_dir: str, stem: str, protected: Sequence[str] = (),
                        overwrite: bool = False) -> OutputGroup:
    """The output group of one image: ``<stem>/det*.png``,
    ``<stem>/gallery.png`` and ``<stem>.npz``, manifest in ``<stem>/``.

    Args:
        out_dir (str): Output directory.
        stem (str): Name of the image's outputs (no path separators).
        protected (Sequence[str]): Paths never written or removed (inputs).
        overwrite (bool): Replace files there that the tool did not write.
    """
    _check_stem(stem)
    own = re.compile(rf'^{re.escape(stem)}/(det\d{{3,}}_[A-Za-z0-9]+\.png|'
                     rf'gallery\.png)$|^{re.escape(stem)}\.npz$')
    return OutputGroup(out_dir, stem, lambda name: bool(own.match(name)),
                       protected=protected, overwrite=overwrite)


def check_explanation_outputs(out_dir: str, stem: str,
                              protected: Sequence[str] = (),
                              overwrite: bool = False) -> None:
    """Before any heavy work: whether the files that every explanation of
    ``stem`` writes (gallery and npz) can be written.

    Raises:
        OutputConflictError: If one would replace an input or a file the
            tool did not write (see :mod:`mmdet_odam.apis.output_files`).
    """
    explanation_outputs(out_dir, stem, protected, overwrite).check(
        [f'{stem}/gallery.png', f'{stem}.npz'])


def save_explanation(sample, image_bgr: np.ndarray, out_dir: str, stem: str,
                     class_names: Optional[Sequence[str]] = None,
                     gallery_target: str = 'combined',
                     alpha: float = 0.7, cmap: str = 'jet',
                     protected: Sequence[str] = (),
                     overwrite: bool = False, dense: bool = False,
                     layout: str = 'separate') -> dict:
    """Write the overlays, gallery and arrays of one explained image.

    Args:
        sample (DetDataSample): One result of :func:`mmdet_odam.apis.explain`.
        image_bgr (ndarray): The explained image, (H, W, 3) uint8 BGR.
        out_dir (str): Output directory (created if missing).
        stem (str): Name of the image's outputs (no path separators).
        class_names (Sequence[str], optional): Label names for captions.
        gallery_target (str): Map shown in the gallery when present, else the
            first target.
        alpha (float): Overlay opacity at heat 1, in [0, 1].
        cmap (str): matplotlib colormap.
        protected (Sequence[str]): Paths never written or removed (the input
            images).
        overwrite (bool): Replace files at the output paths that the tool did
            not write (never protected paths).
        dense (bool): Also store ``heatmaps`` (N, T, H, W) float16 in the
            npz.
        layout (str): ``'separate'``: one overlay per detection and map;
            ``'grid'``: one figure per detection with all its maps side by
            side (``det<idx:03d>_grid.png``); ``'both'``.

    Maps are rendered one detection at a time (a ``HeatMaps`` is never
    materialised whole). Writes
    ``out_dir/<stem>/det<idx:03d>_<target>.png`` (idx: rank in the
    detector's output, 0 first), ``out_dir/<stem>/gallery.png`` ("no
    detections" caption when N = 0) and ``out_dir/<stem>.npz`` with
    the arrays of the module docstring, each atomically, and lists them in
    ``out_dir/<stem>/.mmdet-odam-manifest.json``. Files of an earlier run of
    the same stem that this run does not rewrite (``det*.png`` of more
    detections) are removed if the manifest lists them unchanged; nothing
    else is removed or replaced.

    Returns:
        dict: ``npz``, ``gallery``, ``overlays`` (list of paths),
        ``num_detections`` and ``kept`` (earlier outputs left in place
        because they changed since or are inputs).

    Raises:
        OutputConflictError: Before writing anything, if an output path holds
            an input or a file the tool did not write (and not
            ``overwrite``).
        ValueError: For maps that do not fit, a bad ``alpha``, ``cmap`` or
            ``stem``.
    """
    _check_stem(stem)
    check_colormap(cmap)
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    if not 0. <= alpha <= 1.:
        raise ValueError(f'alpha must be in [0, 1], got {alpha}')
    targets = list(sample.metainfo.get('targets', ()))
    pred = sample.pred_instances
    bboxes = _numpy(pred.bboxes, np.float32).reshape(-1, 4)
    scores = _numpy(pred.scores, np.float32).reshape(-1)
    labels = _numpy(pred.labels, np.int64).reshape(-1)
    heatmaps = pred.heatmaps
    shape = tuple(heatmaps.shape)
    img_h, img_w = image_bgr.shape[:2]
    if len(shape) != 4 or shape[1] != len(targets) or \
            shape[2:] != (img_h, img_w) or shape[0] != len(bboxes):
        raise ValueError(
            f'heatmaps shape {shape} does not fit N={len(bboxes)} '
            f'detections, targets {targets} and image {img_h}x{img_w}')
    outputs = explanation_outputs(out_dir, stem, protected, overwrite)
    separate, grid = layout in ('separate', 'both'), layout in ('grid',
                                                                'both')
    # in the order they are written: per detection its maps, then its grid
    overlay_names = [f'{stem}/det{i:03d}_{name}.png'
                     for i in range(len(bboxes))
                     for name in (targets if separate else []) +
                     (['grid'] if grid else [])]
    gallery_name, npz_name = f'{stem}/gallery.png', f'{stem}.npz'
    outputs.check(overlay_names + [gallery_name, npz_name])

    overlays, tiles, titles, crops, dense_maps = [], [], [], [], []
    tile_index = targets.index(gallery_target) \
        if gallery_target in targets else 0
    # gallery tiles are shrunk as they come (a 12 MP overlay is 36 MB)
    scale = min(max(img_h, img_w), GALLERY_TILE_SIZE) / max(img_h, img_w)
    tile_size = (max(1, round(img_w * scale)), max(1, round(img_h * scale)))
    names = iter(overlay_names)
    for i in range(len(bboxes)):
        name = _class_name(int(labels[i]), class_names)
        text = f'{name} {scores[i]:.2f}'
        det_maps = _detection_maps(heatmaps, i)  # rendered once, used thrice
        crops.append(support_crops(det_maps))
        if dense:
            dense_maps.append(np.clip(det_maps, 0., 1.).astype(np.float16))
        panels = []
        for t in range(len(targets)):
            rgb = overlay_heatmap(image_bgr, det_maps[t], alpha=alpha,
                                  box=bboxes[i], label_text=text, cmap=cmap)
            if separate:
                png = encode_rgb_png(add_colorbar(rgb, cmap,
                                                  f'{targets[t]} map'))
                overlays.append(outputs.write(
                    next(names), lambda f, png=png: f.write(png)))
            if grid:
                panels.append(fit_tile(rgb, tile_size))
            if t == tile_index:
                tiles.append(fit_tile(rgb, tile_size))
                titles.append(f'#{i} {name} {scores[i]:.2f}')
        if grid:
            figure = make_gallery(panels, ncols=len(panels), titles=[
                f'{target} map' for target in targets], tile_size=tile_size)
            png = encode_rgb_png(add_colorbar(
                figure, cmap, f'detection #{i}: {text}, every map'))
            overlays.append(outputs.write(next(names),
                                          lambda f, png=png: f.write(png)))
    if tiles:
        gallery = add_colorbar(
            make_gallery(tiles, titles=titles, tile_size=tile_size), cmap,
            f'{targets[tile_index]} map of each detection')
    else:
        plain = np.ascontiguousarray(image_bgr[..., ::-1])
        gallery = make_gallery([plain], titles=['no detections'],
                               tile_size=tile_size)
    png = encode_rgb_png(gallery)
    gallery_path = outputs.write(gallery_name, lambda f: f.write(png))
    arrays = dict(bboxes=bboxes, scores=scores, labels=labels,
                  **candidate_arrays(pred),
                  targets=np.array(targets, dtype=str),
                  **compact_heatmap_arrays(crops, len(targets),
                                           (img_h, img_w)))
    if dense:
        arrays['heatmaps'] = np.stack(dense_maps) if dense_maps else \
            np.zeros((0, len(targets), img_h, img_w), np.float16)
    npz_path = outputs.write(npz_name,
                             lambda f: np.savez_compressed(f, **arrays))
    kept = outputs.finish()
    return dict(npz=npz_path, gallery=gallery_path, overlays=overlays,
                num_detections=len(bboxes), kept=kept)


def candidate_arrays(pred) -> dict:
    """What each explained row refers to (``ref_index``, ``ref_iou``,
    ``ref_correlation``) and
    which candidate it is (``cand_*``), as numpy arrays, when present."""
    names = ['ref_index', 'ref_iou', 'ref_correlation'] + sorted(
        k for k in pred.keys() if k.startswith('cand_'))
    return {name: _numpy(pred.get(name),
                         np.int64 if name == 'ref_index' or
                         name.startswith('cand_') else np.float32)
            for name in names if name in pred}


def explanation_summary(sample, target: str = 'combined',
                        class_names: Optional[Sequence[str]] = None
                        ) -> List[dict]:
    """Per detection: index, label name, score and the share of its
    ``target`` map's energy inside its own box (:func:`box_energy_fraction`).
    """
    targets = list(sample.metainfo.get('targets', ()))
    if target not in targets:
        raise ValueError(f'target {target!r} not among the explained maps '
                         f'{targets}')
    pred = sample.pred_instances
    slot = targets.index(target)
    bboxes = _numpy(pred.bboxes, np.float32).reshape(-1, 4)
    rows = []
    for i in range(len(bboxes)):
        label = int(pred.labels[i])
        heat = _detection_maps(pred.heatmaps, i)[slot]
        rows.append(dict(index=i, label=_class_name(label, class_names),
                         score=float(pred.scores[i]),
                         energy_in_box=box_energy_fraction(heat, bboxes[i])))
    return rows


__all__ = [
    'IMAGE_EXTENSIONS', 'collect_images', 'unique_stems', 'read_image',
    'box_energy_fraction', 'explanation_outputs', 'support_crops',
    'compact_heatmap_arrays',
    'load_heatmaps_npz',
    'check_explanation_outputs', 'save_explanation', 'explanation_summary',
    'OutputConflictError'
]
