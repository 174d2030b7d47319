"""Deterministic synthetic crowded-scene detection dataset.

:func:`generate_synthetic_crowd` renders RGB scenes of pedestrian-like figures
(plus optional robot / dog / umbrella classes) with heavy mutual occlusion,
textured clothing, cluttered backgrounds and distractor shapes, and writes them
with annotations in both COCO and CrowdHuman (``.odgt``) formats. Everything
depends only on the seed: each image ``i`` of split ``s`` is drawn from its own
``numpy.random.default_rng([seed, s, i])`` (``s`` = 0 for train, 1 for val),
so a split does not change when the other split's size changes, and two runs
with the same arguments write byte-identical files.

Output layout under ``out_dir``::

    images/train/000000.png ...            RGB PNG, img_size x img_size
    images/train/000000.jpg ...            hard link to the .png (see below)
    images/val/000000.png, .jpg ...
    annotations/instances_train.json       COCO (CocoDataset)
    annotations/instances_val.json
    annotations/annotation_train.odgt      CrowdHuman (CrowdHumanDataset)
    annotations/annotation_val.odgt
    annotations/id_hw_train.json           CrowdHuman ``extra_ann_file``
    annotations/id_hw_val.json

Loading::

    CocoDataset(data_root=out_dir, ann_file='annotations/instances_val.json',
                data_prefix=dict(img='images/'),
                metainfo=dict(classes=synthetic_crowd_classes(num_classes)))
    CrowdHumanDataset(data_root=out_dir,
                      ann_file='annotations/annotation_val.odgt',
                      extra_ann_file=f'{out_dir}/annotations/id_hw_val.json',
                      data_prefix=dict(img='images/'))

(``extra_ann_file`` is *not* joined with ``data_root`` by mmdet; pass a full
path.)

Decisions:

* CrowdHuman IDs. mmdet's ``CrowdHumanDataset`` builds the image path as
  ``osp.join(data_prefix['img'], ID + '.jpg')`` (the ``.jpg`` is hard-coded).
  IDs are ``'train/000000'`` / ``'val/000000'`` and every PNG gets a ``.jpg``
  alias next to it: a hard link to the same file (a byte copy where the file
  system has no hard links). The alias holds PNG bytes; OpenCV and Pillow
  decode by content, not by extension, so both dataset classes load exactly
  the same pixels (a lossy JPEG copy would not) at no extra disk cost. The only
  reader that would fail is the ``turbojpeg`` backend.
* COCO ``bbox`` is the FULL (amodal) box: the tight box of the object's whole
  silhouette, including parts hidden behind other objects. ``segmentation``
  is the VISIBLE-pixel mask (compressed RLE, ``counts`` as str) and ``area``
  is its pixel count (the COCO convention: area of the segmentation). Extra
  keys ``visible_bbox`` (xywh) and ``visibility`` (visible / full silhouette
  pixels) are stored too; mmdet ignores them.
* Objects are kept entirely inside the image (no truncation), so the full box
  never leaves the image.
* Hidden objects are dropped, not marked: an object whose visible silhouette
  is below ``min_visible`` (default 15 %) of its full silhouette is removed
  from the scene before rendering (and visibility re-checked, since removing
  it uncovers objects behind it), so every object seen in an image is
  annotated.
* Crowd set (:func:`crowd_mask`): a box whose full box has IoU > 0.5 with
  another GT box of the same image, any class (CrowdHuman definition). A
  fraction ``crowd_ratio`` of objects is placed next to an existing object of
  the same class and similar size with full-box IoU in [0.56, 0.9].
* CrowdHuman files hold only ``person`` (class 0) objects; with
  ``num_classes > 1`` the other classes are absent from the odgt (they are
  simply not part of the CrowdHuman task). ``extra.occ`` is 1 when less than
  90 % of the silhouette is visible; ``head_attr.occ`` is 1 when less than
  50 % of the head is visible. ``hbox`` is the head circle's box.
* Ignore regions: ``ignore_per_image`` tiny, distant figures (smaller than any
  object) are drawn behind everything and written to the odgt only, as
  ``tag: 'mask'`` with ``extra.ignore: 1`` (fbox = vbox = hbox), which
  ``CrowdHumanDataset`` turns into ignored instances. They are not in the COCO
  json.
* COCO image ids are ``index + 1``; annotation ids run from 1 per split;
  category ids are ``class index + 1``.
"""
from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    'SYNTHETIC_CROWD_CLASSES', 'synthetic_crowd_classes',
    'generate_synthetic_crowd', 'crowd_mask', 'crowd_fraction'
]

SYNTHETIC_CROWD_CLASSES: tuple = ('person', 'robot', 'dog', 'umbrella')

#: IoU above which two full boxes count as a crowd pair (CrowdHuman).
CROWD_IOU_THR = 0.5

_SPLITS = (('train', 0), ('val', 1))
_REF_SIZE = 256.0  # sizes below are given for 256 px images and scaled

_SKIN = np.array([(255, 224, 189), (241, 194, 125), (224, 172, 105),
                  (198, 134, 66), (141, 85, 36), (92, 51, 23)], np.float32)
_HAIR = np.array([(20, 18, 16), (60, 40, 22), (110, 78, 40), (205, 170, 95),
                  (150, 150, 150), (130, 45, 20)], np.float32)
_FUR = np.array([(120, 80, 40), (190, 150, 100), (60, 50, 45), (230, 225, 215),
                 (160, 110, 60), (95, 95, 100)], np.float32)
_LIGHTS = np.array([(255, 40, 40), (40, 255, 255), (255, 240, 60),
                    (80, 255, 80)], np.float32)


# --------------------------------------------------------------------------
# crowd statistics
# --------------------------------------------------------------------------
def _pairwise_iou(boxes: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes ``[N, 4]`` (zero-area boxes give IoU 0)."""
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    iw = np.clip(
        np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]),
        0, None)
    ih = np.clip(
        np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]),
        0, None)
    inter = iw * ih
    union = area[:, None] + area[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def crowd_mask(boxes: Union[np.ndarray, Sequence]) -> np.ndarray:
    """Flag the boxes that belong to the "crowd" set of one image.

    A box is in the crowd set when its IoU with ANOTHER box of the same image
    is strictly greater than 0.5 (the CrowdHuman definition, on full boxes).

    Args:
        boxes: ``[N, 4]`` boxes of one image in ``(x1, y1, x2, y2)`` format.

    Returns:
        np.ndarray: Boolean array of shape ``[N]``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) < 2:
        return np.zeros(len(boxes), dtype=bool)
    iou = _pairwise_iou(boxes)
    np.fill_diagonal(iou, 0.0)
    return (iou > CROWD_IOU_THR).any(axis=1)


def crowd_fraction(boxes: Union[np.ndarray, Sequence]) -> float:
    """Fraction of the boxes of one image that are in the crowd set.

    Args:
        boxes: ``[N, 4]`` boxes in ``(x1, y1, x2, y2)`` format.

    Returns:
        float: ``crowd_mask(boxes).mean()``; 0.0 for no boxes.
    """
    mask = crowd_mask(boxes)
    return float(mask.mean()) if len(mask) else 0.0


def synthetic_crowd_classes(num_classes: int) -> tuple:
    """Class names of a synthetic crowd dataset with ``num_classes`` classes.

    Args:
        num_classes: Number of classes, 1 to ``len(SYNTHETIC_CROWD_CLASSES)``.

    Returns:
        tuple: The first ``num_classes`` names; ``('person',)`` for 1.

    Raises:
        ValueError: If ``num_classes`` is out of range.
    """
    n = len(SYNTHETIC_CROWD_CLASSES)
    if (isinstance(num_classes, bool)
            or not isinstance(num_classes, (int, np.integer))
            or not 1 <= num_classes <= n):
        raise ValueError(
            f'num_classes must be an integer in [1, {n}], got {num_classes!r}')
    return tuple(SYNTHETIC_CROWD_CLASSES[:int(num_classes)])


# --------------------------------------------------------------------------
# drawing helpers
# --------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _grid(h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def _pt(x: float, y: float) -> Tuple[int, int]:
    return int(round(x)), int(round(y))


def _thick(t: float) -> int:
    return max(1, int(round(t)))


def _vivid(rng: np.random.Generator) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.3, 0.95),
                                  rng.uniform(0.3, 0.97))
    return np.array([r, g, b], np.float32) * 255.0


def _texture(rng: np.random.Generator, h: int, w: int, c1: np.ndarray,
             scale: float) -> np.ndarray:
    """A ``[h, w, 3]`` float texture: plain, stripes, checks, camo or dots."""
    yy, xx = _grid(h, w)
    kind = int(rng.integers(0, 5))
    c2 = _vivid(rng) if rng.random() < 0.6 else c1 * rng.uniform(0.35, 0.7)
    p = rng.uniform(2.5, 7.0) * scale + 1.0
    if kind == 0:
        return np.broadcast_to(c1, (h, w, 3)).astype(np.float32)
    if kind == 1:
        ang = rng.choice([0.0, 0.5 * math.pi, 0.25 * math.pi, -0.25 * math.pi])
        ang += rng.uniform(-0.2, 0.2)
        t = ((xx * math.cos(ang) + yy * math.sin(ang)) / p) % 2.0 < 1.0
    elif kind == 2:
        t = ((xx // p + yy // p) % 2) > 0
    elif kind == 3:
        small = rng.random((max(2, int(h / p)), max(2, int(w / p))))
        t = cv2.resize(small.astype(np.float32), (w, h),
                       interpolation=cv2.INTER_LINEAR) > 0.5
    else:
        t = ((xx % p - p / 2)**2 + (yy % p - p / 2)**2) < (0.3 * p)**2
    t = t.astype(np.float32)[..., None]
    return c1 + (c2 - c1) * t


# --------------------------------------------------------------------------
# silhouettes: each returns an uint8 part map (0 = empty) and a local head box
# --------------------------------------------------------------------------
def _draw_person(rng: np.random.Generator, h: int,
                 w: int) -> Tuple[np.ndarray, Optional[tuple]]:
    parts = np.zeros((h, w), np.uint8)  # 1 skin 2 hair 3 shirt 4 pants 5 shoe
    cx = w / 2 + rng.uniform(-0.04, 0.04) * w
    r = max(1.0, min(h * rng.uniform(0.075, 0.095), w * 0.3))
    sh_y = 2 * r + 0.03 * h
    hip_y = h * rng.uniform(0.5, 0.58)
    ws, wh = w * rng.uniform(0.5, 0.7), w * rng.uniform(0.4, 0.55)
    arm_t = max(1.0, w * rng.uniform(0.12, 0.17))
    leg_t = max(1.0, w * rng.uniform(0.16, 0.24))
    shoe_h = max(1.0, 0.03 * h)
    foot_y = h - 1 - shoe_h
    # legs
    for side in (-1, 1):
        hip = (cx + side * wh / 4, hip_y)
        fx = cx + side * w * rng.uniform(0.05, 0.38)
        fx = float(np.clip(fx, leg_t / 2, w - 1 - leg_t / 2))
        cv2.line(parts, _pt(*hip), _pt(fx, foot_y), 4, _thick(leg_t))
        cv2.ellipse(parts, _pt(fx + side * leg_t * 0.3, foot_y),
                    (max(1, int(leg_t * 0.7)), max(1, int(shoe_h))), 0, 0, 360,
                    5, -1)
    # torso
    torso = np.array([
        _pt(cx - ws / 2, sh_y), _pt(cx + ws / 2, sh_y),
        _pt(cx + wh / 2, hip_y + 0.04 * h), _pt(cx - wh / 2, hip_y + 0.04 * h)
    ], np.int32)
    cv2.fillConvexPoly(parts, torso, 3)
    # arms (one of them sometimes raised)
    raised = int(rng.integers(-1, 2)) if rng.random() < 0.2 else 0
    for side in (-1, 1):
        sh = (cx + side * (ws / 2 - arm_t / 2), sh_y + arm_t / 2)
        hx = w - 1 - arm_t / 2 if side > 0 else arm_t / 2
        if side == raised:
            hy = max(arm_t / 2, sh_y - h * rng.uniform(0.0, 0.12))
        else:
            hy = sh_y + h * rng.uniform(0.22, 0.36)
        cv2.line(parts, _pt(*sh), _pt(hx, hy), 3, _thick(arm_t))
        cv2.circle(parts, _pt(hx, hy), _thick(arm_t * 0.55), 1, -1)
    # neck, head, hair
    cv2.line(parts, _pt(cx, r), _pt(cx, sh_y), 1, _thick(r * 0.8))
    cv2.circle(parts, _pt(cx, r), _thick(r), 1, -1)
    cv2.ellipse(parts, _pt(cx, r), (_thick(r), _thick(r)), 0, 180 + 10,
                360 - 10, 2, -1)
    head = (int(cx - r), 0, int(math.ceil(cx + r)) + 1, int(math.ceil(2 * r)) + 1)
    return parts, head


def _draw_robot(rng: np.random.Generator, h: int,
                w: int) -> Tuple[np.ndarray, Optional[tuple]]:
    parts = np.zeros((h, w), np.uint8)  # 1 body 2 head 3 joints 4 lights
    ant = 0.12 * h
    head_h, head_w = 0.2 * h, w * rng.uniform(0.4, 0.55)
    cx = w / 2
    cv2.line(parts, _pt(cx, 1), _pt(cx, ant), 3, _thick(0.04 * w))
    cv2.circle(parts, _pt(cx, max(1.0, 0.03 * h)), _thick(0.045 * h), 4, -1)
    cv2.rectangle(parts, _pt(cx - head_w / 2, ant),
                  _pt(cx + head_w / 2, ant + head_h), 2, -1)
    ey = ant + head_h * 0.4
    for side in (-1, 1):
        ex = cx + side * head_w * 0.22
        cv2.rectangle(parts, _pt(ex - 0.05 * w, ey - 0.03 * h),
                      _pt(ex + 0.05 * w, ey + 0.03 * h), 4, -1)
    body_top = ant + head_h + 0.03 * h
    body_bot = h * rng.uniform(0.6, 0.68)
    bw = w * rng.uniform(0.55, 0.65)
    cv2.rectangle(parts, _pt(cx - bw / 2, body_top), _pt(cx + bw / 2, body_bot),
                  1, -1)
    cv2.rectangle(parts, _pt(cx - 0.1 * w, ant + head_h),
                  _pt(cx + 0.1 * w, body_top), 3, -1)
    aw = w * 0.14
    arm_bot = body_top + (body_bot - body_top) * rng.uniform(0.8, 1.05)
    for x0 in (0, w - 1 - aw):
        cv2.rectangle(parts, _pt(x0, body_top + 0.02 * h), _pt(x0 + aw, arm_bot),
                      1, -1)
        cv2.rectangle(parts, _pt(x0, arm_bot), _pt(x0 + aw, arm_bot + 0.04 * h),
                      3, -1)
    lw = w * 0.2
    for x0 in (cx - bw / 2 + 0.02 * w, cx + bw / 2 - 0.02 * w - lw):
        cv2.rectangle(parts, _pt(x0, body_bot), _pt(x0 + lw, h - 1), 1, -1)
        cv2.rectangle(parts, _pt(x0 - 0.03 * w, h - 1 - 0.05 * h),
                      _pt(x0 + lw + 0.03 * w, h - 1), 3, -1)
    return parts, None


def _draw_dog(rng: np.random.Generator, h: int,
              w: int) -> Tuple[np.ndarray, Optional[tuple]]:
    parts = np.zeros((h, w), np.uint8)  # 1 fur 2 dark fur 3 black
    by = 0.5 * h
    leg_t = max(1.0, 0.08 * w)
    for fx in (0.26, 0.36, 0.62, 0.72):
        x = fx * w + rng.uniform(-0.03, 0.03) * w
        cv2.line(parts, _pt(x, by), _pt(x + rng.uniform(-0.04, 0.04) * w,
                                        h - 1 - leg_t / 2), 1, _thick(leg_t))
    cv2.line(parts, _pt(0.22 * w, by - 0.05 * h),
             _pt(0.03 * w, rng.uniform(0.05, 0.3) * h), 2, _thick(0.05 * w))
    cv2.ellipse(parts, _pt(0.49 * w, by), (_thick(0.3 * w), _thick(0.19 * h)),
                0, 0, 360, 1, -1)
    hr = max(1.0, min(0.2 * h, 0.13 * w))
    hc = (w - 1 - 0.16 * w, hr + 0.06 * h)
    cv2.line(parts, _pt(0.7 * w, by - 0.05 * h), _pt(*hc), 1, _thick(hr * 1.2))
    cv2.circle(parts, _pt(*hc), _thick(hr), 1, -1)
    cv2.ellipse(parts, _pt(hc[0] + hr * 0.8, hc[1] + hr * 0.35),
                (_thick(min(hr * 0.9, 0.12 * w)), _thick(hr * 0.5)), 0, 0, 360,
                2, -1)
    cv2.circle(parts, _pt(w - 1 - 0.01 * w, hc[1] + hr * 0.25),
               _thick(hr * 0.25), 3, -1)
    ear = np.array([_pt(hc[0] - hr * 0.9, hc[1] - hr * 0.2),
                    _pt(hc[0] - hr * 0.2, hc[1] - hr * 0.5),
                    _pt(hc[0] - hr * 0.9, 0)], np.int32)
    cv2.fillConvexPoly(parts, ear, 2)
    if rng.random() < 0.5:
        parts = np.ascontiguousarray(parts[:, ::-1])
    return parts, None


def _draw_umbrella(rng: np.random.Generator, h: int,
                   w: int) -> Tuple[np.ndarray, Optional[tuple]]:
    parts = np.zeros((h, w), np.uint8)  # 1 / 2 canopy sectors, 3 shaft
    cx, cy = (w - 1) / 2, 0.48 * h
    tip = 0.05 * h
    t = _thick(0.04 * w)
    cv2.line(parts, _pt(cx, 0), _pt(cx, tip + 1), 3, t)
    cv2.ellipse(parts, _pt(cx, cy), (_thick(w / 2 - 1), _thick(cy - tip)), 0,
                180, 360, 1, -1)
    n_sc = int(rng.integers(4, 8))
    sr = (w - 2) / (2 * n_sc)
    for k in range(n_sc):
        cv2.ellipse(parts, _pt(1 + sr * (2 * k + 1), cy), (_thick(sr),
                                                           _thick(0.06 * h)),
                    0, 0, 180, 1, -1)
    yy, xx = _grid(h, w)
    ang = np.arctan2(yy - cy, xx - cx)
    sector = ((ang / math.pi * n_sc) % 2) < 1
    parts[(parts == 1) & sector] = 2
    hr = max(1.0, 0.09 * w)
    cv2.line(parts, _pt(cx, cy), _pt(cx, h - 1 - hr), 3, t)
    cv2.ellipse(parts, _pt(cx - hr, h - 1 - hr - t / 2),
                (_thick(hr), _thick(hr)), 0, 0, 180, 3, t)
    return parts, None


_DRAWERS = (_draw_person, _draw_robot, _draw_dog, _draw_umbrella)


def _class_dims(rng: np.random.Generator, cls: int, height: float,
                img_size: int) -> Tuple[int, int]:
    """Box height/width of a class for a person-equivalent height."""
    if cls == 0:
        h = height
        w = h / rng.uniform(2.0, 3.0)
    elif cls == 1:
        h = height * rng.uniform(0.75, 0.95)
        w = h / rng.uniform(1.3, 1.7)
    elif cls == 2:
        h = height * rng.uniform(0.38, 0.5)
        w = h * rng.uniform(1.3, 1.8)
    else:
        h = height * rng.uniform(0.45, 0.6)
        w = h / rng.uniform(0.85, 1.1)
    lim = img_size - 2
    return int(np.clip(round(h), 8, lim)), int(np.clip(round(w), 6, lim))


def _colourise(rng: np.random.Generator, cls: int, parts: np.ndarray,
               scale: float) -> np.ndarray:
    """Paint a part map with class-specific colours and textures (uint8)."""
    h, w = parts.shape
    if cls == 0:
        mats = [
            _SKIN[rng.integers(len(_SKIN))], _HAIR[rng.integers(len(_HAIR))],
            _texture(rng, h, w, _vivid(rng), scale),
            _texture(rng, h, w, _vivid(rng) * rng.uniform(0.4, 1.0), scale),
            np.float32(rng.uniform(10, 90)) * np.ones(3, np.float32)
        ]
    elif cls == 1:
        metal = np.float32(rng.uniform(110, 220)) * np.ones(3, np.float32)
        metal = 0.7 * metal + 0.3 * _vivid(rng)
        body = (_texture(rng, h, w, metal, scale)
                if rng.random() < 0.5 else metal)
        mats = [body, metal * 0.85, np.full(3, 45, np.float32),
                _LIGHTS[rng.integers(len(_LIGHTS))]]
    elif cls == 2:
        fur = _FUR[rng.integers(len(_FUR))] * rng.uniform(0.85, 1.1)
        body = _texture(rng, h, w, fur, scale) if rng.random() < 0.4 else fur
        mats = [body, fur * 0.6, np.full(3, 15, np.float32)]
    else:
        mats = [_vivid(rng), _vivid(rng), np.full(3, 35, np.float32)]
    out = np.zeros((h, w, 3), np.float32)
    for k, mat in enumerate(mats, start=1):
        m = parts == k
        out[m] = mat[m] if mat.ndim == 3 else mat
    # cylindrical shading, fabric noise and a dark outline
    _, xx = _grid(h, w)
    c = rng.uniform(0.3, 0.7)
    out *= (1.1 - 0.5 * np.abs((xx[0] + 0.5) / w - c))[None, :, None]
    out += rng.normal(0.0, 5.0, (h, w, 1)).astype(np.float32)
    mask = (parts > 0).astype(np.uint8)
    edge = (mask > 0) & (cv2.erode(mask, np.ones((3, 3), np.uint8)) == 0)
    out[edge] *= 0.55
    return np.clip(out, 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Gradient + ground plane + multi-scale noise, uint8 RGB."""
    yy, xx = _grid(size, size)
    c1, c2 = rng.uniform(25, 230, (2, 3)).astype(np.float32)
    th = rng.uniform(0, 2 * math.pi)
    t = (xx * np.float32(math.cos(th)) + yy * np.float32(math.sin(th)))
    t -= t.min()
    t *= np.float32(1.0 / max(float(t.max()), 1e-6))
    horizon = rng.uniform(0.25, 0.6) * size
    ground = rng.uniform(40, 200, 3).astype(np.float32)
    a = np.clip((yy[:, :1] - np.float32(horizon)) / np.float32(0.08 * size),
                0, 1) * np.float32(0.6)  # [size, 1] ground blend per row
    # img = (c1 + (c2 - c1) t) (1 - a) + ground a, per channel
    img = t[..., None] * (c2 - c1) + c1
    img *= (1 - a)[..., None]
    img += a[..., None] * ground
    g = int(rng.integers(3, 9))
    img += cv2.resize(rng.normal(0, 1, (g, g, 3)).astype(np.float32),
                      (size, size), interpolation=cv2.INTER_CUBIC) * np.float32(
                          rng.uniform(8, 30))
    g = max(4, size // int(rng.integers(3, 7)))
    img += cv2.resize(rng.normal(0, 1, (g, g, 3)).astype(np.float32),
                      (size, size), interpolation=cv2.INTER_LINEAR) * np.float32(
                          rng.uniform(3, 12))
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


def _distractors(rng: np.random.Generator, canvas: np.ndarray, n: int,
                 scale: float) -> None:
    """Random polygons, lines, rectangles and rings that are not objects."""
    size = canvas.shape[0]
    for _ in range(n):
        col = tuple(float(v) for v in rng.uniform(0, 255, 3))
        kind = int(rng.integers(0, 5))
        c = rng.uniform(0, size, 2)
        ext = rng.uniform(8, 70) * scale
        if kind == 0:
            k = int(rng.integers(3, 8))
            ang = np.sort(rng.uniform(0, 2 * math.pi, k))
            rad = ext * rng.uniform(0.4, 1.0, k)
            pts = np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)],
                           1)
            cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], col)
        elif kind == 1:
            p2 = c + rng.normal(0, 1, 2) * ext * 1.5
            cv2.line(canvas, _pt(*c), _pt(*p2), col,
                     _thick(rng.uniform(1, 4) * scale))
        elif kind == 2:
            p2 = c + rng.uniform(0.3, 1.0, 2) * ext
            cv2.rectangle(canvas, _pt(*c), _pt(*p2), col,
                          -1 if rng.random() < 0.6 else _thick(2 * scale))
        elif kind == 3:
            cv2.circle(canvas, _pt(*c), _thick(ext * 0.3), col,
                       -1 if rng.random() < 0.5 else _thick(2 * scale))
        else:  # window grid / fence
            step = max(3.0, ext / 4)
            for j in range(4):
                p = c + np.array([j * step, 0.0])
                cv2.line(canvas, _pt(*p), _pt(p[0], p[1] + ext), col,
                         _thick(scale))


# --------------------------------------------------------------------------
# scene synthesis
# --------------------------------------------------------------------------
@dataclass
class _Obj:
    cls: int  # class index; ignore regions use 0 (person figures)
    ignore: bool
    x0: int
    y0: int
    parts: np.ndarray  # uint8 part map of the nominal box
    head: Optional[tuple]  # local head box (x1, y1, x2, y2), exclusive

    @property
    def mask(self) -> np.ndarray:
        return self.parts > 0

    @property
    def bottom(self) -> int:
        return self.y0 + self.parts.shape[0]


def _box_iou_1n(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xywh box with ``[M, 4]`` xywh boxes."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y2 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / (box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter)


def _layout(rng: np.random.Generator, cfg: dict) -> List[Tuple[int, int, int,
                                                               int, int]]:
    """Sample ``(cls, x0, y0, w, h)`` nominal object boxes, crowd pairs
    included."""
    size, scale = cfg['img_size'], cfg['scale']
    lo, hi = cfg['objects_per_image']
    n = int(rng.integers(lo, hi + 1))
    hmin, hmax = 30 * scale, 120 * scale
    out: List[Tuple[int, int, int, int, int]] = []
    for _ in range(n):
        placed = None
        if out and rng.random() < cfg['crowd_ratio']:
            a = out[int(rng.integers(len(out)))]
            cls, aw, ah = a[0], a[3], a[4]
            w = int(np.clip(round(aw * rng.uniform(0.88, 1.12)), 6, size - 2))
            h = int(np.clip(round(ah * rng.uniform(0.88, 1.12)), 8, size - 2))
            k = 32
            cx = a[1] + aw / 2 + rng.uniform(-0.4, 0.4, k) * aw
            cy = a[2] + ah / 2 + rng.uniform(-0.12, 0.12, k) * ah
            x0 = np.clip(np.round(cx - w / 2), 0, size - w)
            y0 = np.clip(np.round(cy - h / 2), 0, size - h)
            cand = np.stack([x0, y0, np.full(k, w), np.full(k, h)], 1)
            iou = _box_iou_1n(np.array(a[1:], np.float64), cand)
            ok = np.flatnonzero((iou >= 0.56) & (iou <= 0.9))
            if len(ok):
                placed = (cls, int(x0[ok[0]]), int(y0[ok[0]]), w, h)
        if placed is None:
            cls = int(rng.integers(cfg['num_classes']))
            height = math.exp(rng.uniform(math.log(hmin), math.log(hmax)))
            h, w = _class_dims(rng, cls, height, size)
            placed = (cls, int(rng.integers(0, size - w + 1)),
                      int(rng.integers(0, size - h + 1)), w, h)
        out.append(placed)
    return out


def _zbuffer(objs: List[_Obj], keep: np.ndarray, fg: np.ndarray,
             size: int) -> np.ndarray:
    """Index of the front-most kept object per pixel (-1: none / occluder)."""
    lab = np.full((size, size), -1, np.int16)
    for k, o in enumerate(objs):
        if keep[k]:
            h, w = o.parts.shape
            lab[o.y0:o.y0 + h, o.x0:o.x0 + w][o.mask] = k
    lab[fg] = -1
    return lab


def _tight(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """Tight xyxy box (exclusive max) of a bool mask, or None if empty."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _xywh(b: Sequence[int]) -> List[int]:
    return [int(b[0]), int(b[1]), int(b[2] - b[0]), int(b[3] - b[1])]


def _render_image(seed_seq: Sequence[int], cfg: dict) -> Tuple[bytes, list]:
    """Render one image; returns PNG bytes and per-object records."""
    rng = np.random.default_rng(list(seed_seq))
    size, scale = cfg['img_size'], cfg['scale']
    canvas = _background(rng, size)
    clo, chi = cfg['clutter']
    _distractors(rng, canvas, int(rng.integers(clo, chi + 1)), scale)

    objs: List[_Obj] = []
    ilo, ihi = cfg['ignore_per_image']
    for _ in range(int(rng.integers(ilo, ihi + 1))):  # tiny distant figures
        h = int(max(6, round(rng.uniform(10, 20) * scale)))
        w = max(3, int(round(h / rng.uniform(2.0, 3.0))))
        parts, head = _draw_person(rng, h, w)
        objs.append(_Obj(0, True, int(rng.integers(0, size - w + 1)),
                         int(rng.integers(0, size - h + 1)), parts, head))
    n_ign = len(objs)
    layout = _layout(rng, cfg)
    order = sorted(range(len(layout)),
                   key=lambda i: (layout[i][2] + layout[i][4], i))
    for i in order:  # back (higher in the image) to front
        cls, x0, y0, w, h = layout[i]
        parts, head = _DRAWERS[cls](rng, h, w)
        objs.append(_Obj(cls, False, x0, y0, parts, head))

    # foreground occluders (poles / wires) that are not objects
    fg = np.zeros((size, size), np.uint8)
    fg_col = []
    if rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 3))):
            col = tuple(float(v) for v in rng.uniform(20, 120, 3))
            if rng.random() < 0.5:
                x = rng.uniform(0, size)
                p1, p2 = (x, rng.uniform(0, 0.5) * size), (x, size)
                t = _thick(rng.uniform(2, 4) * scale)
            else:
                p1 = (0, rng.uniform(0, size))
                p2 = (size, rng.uniform(0, size))
                t = 1
            cv2.line(fg, _pt(*p1), _pt(*p2), 1, t)
            fg_col.append((p1, p2, t, col))
    fg = fg.astype(bool)

    # drop objects that end up (almost) hidden; repeat since dropping one
    # uncovers the objects behind it
    full_area = np.array([o.parts.astype(bool).sum() for o in objs], np.int64)
    keep = full_area > 0
    while True:
        lab = _zbuffer(objs, keep, fg, size)
        vis = np.bincount(lab.ravel() + 1, minlength=len(objs) + 1)[1:]
        frac = vis / np.maximum(full_area, 1)
        hidden = keep & ((frac < cfg['min_visible']) | (vis == 0))
        if not hidden.any():
            break
        keep &= ~hidden

    for k, o in enumerate(objs):
        if keep[k]:
            patch = _colourise(rng, o.cls, o.parts, scale)
            h, w = o.parts.shape
            region = canvas[o.y0:o.y0 + h, o.x0:o.x0 + w]
            region[o.mask] = patch[o.mask]
    for p1, p2, t, col in fg_col:
        cv2.line(canvas, _pt(*p1), _pt(*p2), col, t)
    sigma = rng.uniform(0.0, 0.7)
    if sigma > 0.3:
        canvas = cv2.GaussianBlur(canvas, (3, 3), sigma)
    noisy = rng.standard_normal(canvas.shape, dtype=np.float32)
    noisy *= 3.0
    noisy += canvas
    canvas = np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)
    ok, png = cv2.imencode('.png', canvas[..., ::-1],
                           [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok, 'PNG encoding failed'

    records = []
    for k, o in enumerate(objs):
        if not keep[k]:
            continue
        h, w = o.parts.shape
        fx1, fy1, fx2, fy2 = _tight(o.mask)
        fbox = (o.x0 + fx1, o.y0 + fy1, o.x0 + fx2, o.y0 + fy2)
        vis_local = lab[o.y0:o.y0 + h, o.x0:o.x0 + w] == k
        vx1, vy1, vx2, vy2 = _tight(vis_local)
        vbox = (o.x0 + vx1, o.y0 + vy1, o.x0 + vx2, o.y0 + vy2)
        rec = dict(cls=o.cls, ignore=o.ignore, fbox=fbox, vbox=vbox,
                   area=int(vis[k]), visibility=float(frac[k]), hbox=None,
                   head_vis=1.0, index=k)
        if o.head is not None:
            hx1, hy1, hx2, hy2 = o.head
            hx1, hy1 = max(hx1, 0), max(hy1, 0)
            hx2, hy2 = min(hx2, w), min(hy2, h)
            rec['hbox'] = (o.x0 + hx1, o.y0 + hy1, o.x0 + hx2, o.y0 + hy2)
            hm = o.mask[hy1:hy2, hx1:hx2]
            rec['head_vis'] = float(vis_local[hy1:hy2, hx1:hx2][hm].sum() /
                                    max(hm.sum(), 1))
        records.append(rec)
    # visible masks as COCO RLE (objects only; ignore regions are odgt-only)
    obj_recs = [r for r in records if not r['ignore']]
    if obj_recs:
        stack = np.stack([lab == r['index'] for r in obj_recs], axis=-1)
        rles = mask_utils.encode(np.asfortranarray(stack.astype(np.uint8)))
        for r, rle in zip(obj_recs, rles):
            r['rle'] = {
                'size': [int(v) for v in rle['size']],
                'counts': rle['counts'].decode('ascii')
            }
    return png.tobytes(), records


def _check_int(name: str, value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f'{name} must be an integer, got {value!r}')
    if value < lo:
        raise ValueError(f'{name} must be >= {lo}, got {value}')
    return int(value)


def _check_range(name: str, value, lo: int) -> Tuple[int, int]:
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f'{name} must be a (min, max) pair, got {value!r}')
    a, b = _check_int(f'{name}[0]', a, lo), _check_int(f'{name}[1]', b, lo)
    if a > b:
        raise ValueError(f'{name} must satisfy min <= max, got {value!r}')
    return a, b


def _check_unit(name: str, value, hi_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value,
                                                 (int, float, np.floating)):
        raise ValueError(f'{name} must be a number, got {value!r}')
    value = float(value)
    if not (0.0 <= value < 1.0 if hi_open else 0.0 <= value <= 1.0):
        raise ValueError(f'{name} must be in [0, 1{")" if hi_open else "]"}, '
                         f'got {value}')
    return value


def _owned_annotation_files() -> List[str]:
    return [
        f'{stem}_{split}.{ext}' for split, _ in _SPLITS
        for stem, ext in (('instances', 'json'), ('annotation', 'odgt'),
                          ('id_hw', 'json'))
    ]


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output path '{out}' exists and is not a "
                              'directory')
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"output directory '{out}' is not empty; use overwrite=True "
                '(--overwrite) to replace its images/ and annotations/ files')
        for split, _ in _SPLITS:
            d = out / 'images' / split
            if d.is_dir() and not d.is_symlink():
                shutil.rmtree(d)
            elif d.exists() or d.is_symlink():
                d.unlink()
        for name in _owned_annotation_files():
            f = out / 'annotations' / name
            if f.exists() or f.is_symlink():
                f.unlink()
    for split, _ in _SPLITS:
        (out / 'images' / split).mkdir(parents=True, exist_ok=True)
    (out / 'annotations').mkdir(parents=True, exist_ok=True)


def _write_alias(src: Path, dst: Path, data: bytes) -> None:
    """``dst`` as a hard link to ``src`` (byte copy if links fail)."""
    try:
        os.link(src, dst)
    except OSError:
        dst.write_bytes(data)


def _dump_json(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, separators=(',', ':')) + '\n',
                    encoding='utf-8')


def generate_synthetic_crowd(out_dir: Union[str, os.PathLike],
                             num_train: int = 800,
                             num_val: int = 200,
                             img_size: int = 256,
                             num_classes: int = 1,
                             objects_per_image: Tuple[int, int] = (4, 10),
                             crowd_ratio: float = 0.2,
                             seed: int = 0,
                             overwrite: bool = False,
                             *,
                             clutter: Tuple[int, int] = (4, 12),
                             ignore_per_image: Tuple[int, int] = (0, 1),
                             min_visible: float = 0.15) -> dict:
    """Generate the synthetic crowded-scene dataset (see the module docstring
    for the layout and conventions).

    Args:
        out_dir: Output directory; created if missing.
        num_train: Number of training images (>= 0).
        num_val: Number of validation images (>= 0).
        img_size: Side of the square images in pixels (>= 64). Object sizes
            (30-120 px person height at 256 px) scale with it.
        num_classes: Number of classes, 1 to ``len(SYNTHETIC_CROWD_CLASSES)``.
        objects_per_image: Inclusive ``(min, max)`` number of objects sampled
            per image, before hidden ones are dropped.
        crowd_ratio: Probability that an object is placed next to an existing
            one so that their full boxes have IoU in [0.56, 0.9]. The default
            0.2 gives ~27% crowd boxes (CrowdHuman: ~21%).
        seed: Non-negative random seed; same seed, same bytes.
        overwrite: Allow a non-empty ``out_dir``; then only ``images/train``,
            ``images/val`` and the annotation files written here are
            replaced, nothing else in ``out_dir`` is touched.
        clutter: Inclusive ``(min, max)`` number of background distractor
            shapes per image.
        ignore_per_image: Inclusive ``(min, max)`` number of tiny ignore
            figures per image (odgt ``tag: 'mask'`` only).
        min_visible: Objects whose visible fraction of their silhouette is
            below this are removed from the scene, in ``[0, 1)``.

    Returns:
        dict: ``{'out_dir', 'classes', 'train': stats, 'val': stats}`` where
        ``stats`` has ``images``, ``boxes`` (COCO GT boxes), ``crowd_boxes``,
        ``crowd_fraction`` (of the COCO GT boxes), ``odgt_boxes`` (person
        boxes in the odgt), ``ignore_boxes`` (odgt ignore regions) and
        ``boxes_per_class``.

    Raises:
        ValueError: On invalid arguments.
        FileExistsError: If ``out_dir`` is non-empty and ``overwrite`` is
            False (nothing is written then).
    """
    num_train = _check_int('num_train', num_train, 0)
    num_val = _check_int('num_val', num_val, 0)
    if num_train + num_val == 0:
        raise ValueError('num_train + num_val must be >= 1')
    img_size = _check_int('img_size', img_size, 64)
    classes = synthetic_crowd_classes(num_classes)
    objects_per_image = _check_range('objects_per_image', objects_per_image, 1)
    clutter = _check_range('clutter', clutter, 0)
    ignore_per_image = _check_range('ignore_per_image', ignore_per_image, 0)
    crowd_ratio = _check_unit('crowd_ratio', crowd_ratio)
    min_visible = _check_unit('min_visible', min_visible, hi_open=True)
    seed = _check_int('seed', seed, 0)
    out = Path(out_dir)
    _prepare_out_dir(out, bool(overwrite))

    cfg = dict(img_size=img_size, scale=img_size / _REF_SIZE,
               num_classes=num_classes, objects_per_image=objects_per_image,
               crowd_ratio=crowd_ratio, clutter=clutter,
               ignore_per_image=ignore_per_image, min_visible=min_visible)
    categories = [dict(id=i + 1, name=n, supercategory='object')
                  for i, n in enumerate(classes)]
    summary: Dict[str, object] = dict(out_dir=str(out), classes=classes)
    for split, split_id in _SPLITS:
        n_img = num_train if split == 'train' else num_val
        images, anns, odgt, id_hw = [], [], [], {}
        n_crowd = n_ignore = n_odgt = 0
        per_class = [0] * num_classes
        for i in range(n_img):
            png, recs = _render_image((seed, split_id, i), cfg)
            stem = f'{split}/{i:06d}'
            png_path = out / 'images' / f'{stem}.png'
            png_path.write_bytes(png)
            _write_alias(png_path, out / 'images' / f'{stem}.jpg', png)
            images.append(dict(id=i + 1, file_name=f'{stem}.png',
                               width=img_size, height=img_size))
            id_hw[stem] = [img_size, img_size]
            objs = [r for r in recs if not r['ignore']]
            crowd = crowd_mask(np.array([r['fbox'] for r in objs], np.float64))
            n_crowd += int(crowd.sum())
            for r in objs:
                per_class[r['cls']] += 1
                anns.append(dict(
                    id=len(anns) + 1, image_id=i + 1, category_id=r['cls'] + 1,
                    bbox=_xywh(r['fbox']), area=r['area'], iscrowd=0,
                    segmentation=r['rle'], visible_bbox=_xywh(r['vbox']),
                    visibility=round(r['visibility'], 4)))
            gtboxes = []
            for r in recs:
                if r['cls'] != 0:
                    continue
                fbox = _xywh(r['fbox'])
                if r['ignore']:
                    n_ignore += 1
                    gtboxes.append(dict(
                        tag='mask', fbox=fbox, vbox=fbox, hbox=fbox,
                        extra=dict(box_id=len(gtboxes), occ=0, ignore=1),
                        head_attr=dict(ignore=1, occ=0, unsure=0)))
                else:
                    n_odgt += 1
                    gtboxes.append(dict(
                        tag='person', fbox=fbox, vbox=_xywh(r['vbox']),
                        hbox=_xywh(r['hbox']),
                        extra=dict(box_id=len(gtboxes),
                                   occ=int(r['visibility'] < 0.9), ignore=0),
                        head_attr=dict(ignore=0,
                                       occ=int(r['head_vis'] < 0.5),
                                       unsure=0)))
            odgt.append(json.dumps(dict(ID=stem, gtboxes=gtboxes),
                                   separators=(',', ':')))
        ann_dir = out / 'annotations'
        _dump_json(
            dict(info=dict(description='mmdet_odam synthetic crowd',
                           seed=seed, split=split), images=images,
                 annotations=anns, categories=categories),
            ann_dir / f'instances_{split}.json')
        (ann_dir / f'annotation_{split}.odgt').write_text(
            ''.join(line + '\n' for line in odgt), encoding='utf-8')
        _dump_json(id_hw, ann_dir / f'id_hw_{split}.json')
        summary[split] = dict(
            images=n_img, boxes=len(anns), crowd_boxes=n_crowd,
            crowd_fraction=n_crowd / len(anns) if anns else 0.0,
            odgt_boxes=n_odgt, ignore_boxes=n_ignore,
            boxes_per_class=dict(zip(classes, per_class)))
    return summary
