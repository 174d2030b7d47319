"""Render ODAM heat maps: colour maps, overlays with the box, galleries.

Pure functions on numpy arrays, no global state.

Channel order: images read by mmcv / OpenCV are **BGR**; everything these
functions *return* is **RGB** ``uint8`` (the order of saved PNGs in this
project). :func:`save_rgb_png` writes such an array with the right order.
Boxes and text are drawn with OpenCV primitives (``cv2.rectangle`` /
``cv2.putText``): mmdet's ``DetLocalVisualizer`` is a named global instance
that renders through a matplotlib canvas, which is slower and heavier than
needed for one box and one caption per picture.
"""
import math
import os
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

BoxType = Sequence[float]
SizeType = Union[int, Tuple[int, int]]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LUTS: dict = {}


def _lut(cmap: str) -> np.ndarray:
    """(256, 3) uint8 RGB lookup table of a matplotlib colormap."""
    if cmap not in _LUTS:
        import matplotlib
        try:
            colormap = matplotlib.colormaps[cmap]
        except KeyError:
            raise ValueError(f'unknown colormap {cmap!r} (any matplotlib '
                             f"colormap name, e.g. 'jet', 'turbo', 'inferno')"
                             ) from None
        rgba = colormap(np.linspace(0., 1., 256))
        _LUTS[cmap] = np.round(rgba[:, :3] * 255).astype(np.uint8)
    return _LUTS[cmap]


def check_colormap(cmap: str) -> str:
    """Return ``cmap`` if matplotlib has a colormap of that name.

    Raises:
        ValueError: Naming the unknown colormap.
    """
    _lut(cmap)
    return cmap


def _check_heatmap(heatmap: np.ndarray) -> np.ndarray:
    """float32 (H, W) copy clipped to [0, 1]; NaN/inf count as 0 / 1."""
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2:
        raise ValueError(f'heatmap must be 2-D (H, W), got shape '
                         f'{tuple(heatmap.shape)}')
    heatmap = np.nan_to_num(heatmap.astype(np.float32), nan=0., posinf=1.,
                            neginf=0.)
    return np.clip(heatmap, 0., 1.)


def colorize_heatmap(heatmap: np.ndarray, cmap: str = 'jet') -> np.ndarray:
    """Colour a heat map.

    Args:
        heatmap (ndarray): (H, W) values in [0, 1] (clipped; NaN -> 0).
        cmap (str): A matplotlib colormap name. Defaults to ``'jet'``.

    Returns:
        ndarray: (H, W, 3) uint8, **RGB**.

    Raises:
        ValueError: If ``heatmap`` is not 2-D or ``cmap`` is unknown.
    """
    heatmap = _check_heatmap(heatmap)
    index = np.round(heatmap * 255).astype(np.uint8)
    return _lut(cmap)[index]


def _fit_font_scale(text: str, max_width: int, scale: float = 0.5,
                    min_scale: float = 0.25) -> float:
    """Largest font scale <= ``scale`` at which ``text`` fits ``max_width``."""
    while scale > min_scale:
        (w, _), _ = cv2.getTextSize(text, _FONT, scale, 1)
        if w <= max_width:
            break
        scale *= 0.9
    return max(scale, min_scale)


def _font_scale(h: int, w: int) -> float:
    """Caption font scale for an (h, w) picture: 0.3 up to ~200 px, 0.5 from
    ~330 px on."""
    return float(min(max(min(h, w) / 660., 0.3), 0.5))


def _draw_label(img: np.ndarray, text: str, box: Tuple[int, int, int, int],
                color: Tuple[int, int, int]) -> None:
    """Text on a filled background at a box (x1, y1, x2, y2): above it if
    there is room, else below it, else inside its top. Stays inside the
    image. Draws in place; ``color`` in the image's channel order."""
    h, w = img.shape[:2]
    scale = _fit_font_scale(text, max(w - 2, 1), _font_scale(h, w))
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    box_h = th + base + 2
    x1, y1, _, y2 = box
    if y1 - box_h >= 0:
        y = y1 - box_h
    elif y2 + 1 + box_h <= h:
        y = y2 + 1
    else:
        y = y1
    x = int(min(max(x1, 0), max(w - tw - 2, 0)))
    y = int(min(max(y, 0), max(h - box_h, 0)))
    cv2.rectangle(img, (x, y), (x + tw + 1, y + box_h - 1), color, -1)
    cv2.putText(img, text, (x + 1, y + th + 1), _FONT, scale, (0, 0, 0), 1,
                cv2.LINE_AA)


def draw_box(img: np.ndarray, box: BoxType,
             color: Tuple[int, int, int] = (255, 255, 255),
             label_text: Optional[str] = None) -> np.ndarray:
    """Draw a box (x1, y1, x2, y2) with a dark outline and optional label,
    in place, and return ``img``. ``color`` is in ``img``'s channel order."""
    if len(box) != 4:
        raise ValueError(f'box must be (x1, y1, x2, y2), got {box!r}')
    h, w = img.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f'box must be finite, got {box!r}')
    p1 = (int(round(min(max(x1, 0), w - 1))), int(round(min(max(y1, 0),
                                                            h - 1))))
    p2 = (int(round(min(max(x2, 0), w - 1))), int(round(min(max(y2, 0),
                                                            h - 1))))
    t = max(1, int(round(min(h, w) / 400)))  # line width, pixels
    cv2.rectangle(img, (p1[0] - t, p1[1] - t), (p2[0] + t, p2[1] + t),
                  (0, 0, 0), t)  # dark outline: visible on light colours
    cv2.rectangle(img, p1, p2, color, t)
    if label_text:
        _draw_label(img, str(label_text), (*p1, *p2), color)
    return img


def overlay_heatmap(image_bgr: np.ndarray,
                    heatmap: np.ndarray,
                    alpha: float = 0.7,
                    box: Optional[BoxType] = None,
                    label_text: Optional[str] = None,
                    cmap: str = 'jet',
                    box_color: Tuple[int, int, int] = (255, 255, 255)
                    ) -> np.ndarray:
    """Blend a coloured heat map over an image and draw the detection box.

    Each pixel is blended with opacity ``alpha * sqrt(heatmap)``: the map's
    hottest pixels get opacity ``alpha``, weak heat stays visible (the square
    root lifts it; the colour still encodes the value) and zero heat leaves
    the image unchanged, so an all-zero map renders as the plain image (plus
    box/text).

    Args:
        image_bgr (ndarray): (H, W, 3) uint8 **BGR** image (as read by mmcv),
            or (H, W) grayscale.
        heatmap (ndarray): (H, W) in [0, 1], same H, W as the image.
        alpha (float): Opacity at heat 1, in [0, 1].
        box (Sequence[float], optional): (x1, y1, x2, y2) in image pixels.
        label_text (str, optional): Caption drawn at the box (or the image's
            top-left corner when no box is given).
        cmap (str): matplotlib colormap name.
        box_color (tuple): RGB colour of the box and caption background.

    Returns:
        ndarray: (H, W, 3) uint8 **RGB**.

    Raises:
        ValueError: On a shape mismatch, a non-image input or bad ``alpha``.
    """
    image = np.asarray(image_bgr)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image must be (H, W, 3) BGR or (H, W), got shape '
                         f'{tuple(np.asarray(image_bgr).shape)}')
    if image.dtype != np.uint8:
        raise ValueError(f'image must be uint8, got {image.dtype}')
    heat = _check_heatmap(heatmap)
    if heat.shape != image.shape[:2]:
        raise ValueError(f'heatmap shape {tuple(heat.shape)} does not match '
                         f'image shape {tuple(image.shape[:2])} (H, W)')
    if not 0. <= float(alpha) <= 1.:
        raise ValueError(f'alpha must be in [0, 1], got {alpha}')
    rgb = image[..., ::-1].astype(np.float32)
    color = colorize_heatmap(heat, cmap).astype(np.float32)
    weight = (float(alpha) * np.sqrt(heat))[..., None]
    out = np.round(rgb * (1. - weight) + color * weight)
    out = np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8))
    if box is not None:
        draw_box(out, box, box_color, label_text)
    elif label_text:
        _draw_label(out, str(label_text), (0, 0, 0, 0), box_color)
    return out


def add_colorbar(rgb: np.ndarray, cmap: str = 'jet',
                 title: Optional[str] = None, low: str = '0',
                 high: str = '1', background: int = 255) -> np.ndarray:
    """A legend band under a picture: ``title`` (which map it shows, e.g.
    ``'x2 map'``) on the left, a horizontal colour bar of ``cmap`` from
    ``low`` to ``high`` on the right.

    The picture itself is kept unchanged as the top rows of the output; the
    band's height grows with the picture's width (about 1/14 of it, 16 to
    36 px).

    Args:
        rgb (ndarray): (H, W, 3) uint8 picture (RGB, as the overlays).
        cmap (str): matplotlib colormap of the map shown.
        title (str, optional): The target's name.
        low, high (str): Labels of the bar's ends (map values 0 and 1).
        background (int): Grey level of the band.

    Returns:
        ndarray: (H + band, W, 3) uint8.

    Raises:
        ValueError: For a picture that is not (H, W, 3) uint8 or an unknown
            colormap.
    """
    rgb = _tile_rgb(rgb)
    h, w = rgb.shape[:2]
    band_h = min(max(16, int(round(w / 14))), 36)
    band = np.full((band_h, w, 3), background, np.uint8)
    pad = max(2, band_h // 6)
    scale = _fit_font_scale('Ag', 10 ** 6, min(0.9, band_h / 34.))
    (_, th), base = cv2.getTextSize('Ag', _FONT, scale, 1)
    while th + base > band_h - 2 * pad and scale > 0.25:
        scale *= 0.9
        (_, th), base = cv2.getTextSize('Ag', _FONT, scale, 1)
    text_y = (band_h + th) // 2
    x = pad
    if title:
        text = str(title)
        scale_t = _fit_font_scale(text, max(int(0.45 * w) - pad, 1), scale)
        (tw, _), _ = cv2.getTextSize(text, _FONT, scale_t, 1)
        cv2.putText(band, text, (x, text_y), _FONT, scale_t, (0, 0, 0), 1,
                    cv2.LINE_AA)
        x += tw + 2 * pad
    (lw, _), _ = cv2.getTextSize(low, _FONT, scale, 1)
    (hw, _), _ = cv2.getTextSize(high, _FONT, scale, 1)
    bar_x0 = max(x + lw + pad, w // 2)
    bar_x1 = min(w - hw - 2 * pad, bar_x0 + 400)  # at most 400 px long
    if bar_x1 - bar_x0 >= 8:
        cv2.putText(band, low, (bar_x0 - lw - pad // 2, text_y), _FONT,
                    scale, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(band, high, (bar_x1 + pad // 2 + 1, text_y), _FONT,
                    scale, (0, 0, 0), 1, cv2.LINE_AA)
        ramp = np.linspace(0., 1., bar_x1 - bar_x0, dtype=np.float32)
        colours = colorize_heatmap(ramp[None], cmap)[0]
        band[pad:band_h - pad, bar_x0:bar_x1] = colours[None]
    return np.concatenate([rgb, band], axis=0)


def show_cam_on_image(img: np.ndarray, heatmap: np.ndarray,
                      image_weight: float = 0.5, cmap: str = 'jet',
                      title: Optional[str] = None, colorbar: bool = True,
                      bgr: bool = False) -> np.ndarray:
    """Blend a heat map over an image, for notebooks (in the manner of
    pytorch-grad-cam's helper of that name): ``(1 - image_weight) * colour
    + image_weight * image``, everywhere.

    Args:
        img (ndarray): (H, W, 3) RGB image, uint8 or float in [0, 1]
            (``bgr=True``: BGR, as mmcv / OpenCV read it).
        heatmap (ndarray | Tensor): (H, W) map in [0, 1] (e.g.
            ``heatmaps[i, t]`` of :func:`mmdet_odam.apis.explain`).
        image_weight (float): Weight of the image, in [0, 1].
        cmap (str): matplotlib colormap.
        title (str, optional): The map's name, written beside the colour bar.
        colorbar (bool): Append the legend band (:func:`add_colorbar`).
        bgr (bool): ``img`` is BGR.

    Returns:
        ndarray: uint8 RGB, (H, W, 3) or taller with the colour bar.

    Raises:
        ValueError: Mismatched shapes, a weight outside [0, 1].
    """
    if hasattr(heatmap, 'detach'):
        heatmap = heatmap.detach().cpu().numpy()
    image = np.asarray(img)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'img must be (H, W, 3), got shape '
                         f'{tuple(image.shape)}')
    if not 0. <= float(image_weight) <= 1.:
        raise ValueError(f'image_weight must be in [0, 1], got '
                         f'{image_weight}')
    heat = _check_heatmap(heatmap)
    if heat.shape != image.shape[:2]:
        raise ValueError(f'heatmap shape {tuple(heat.shape)} does not match '
                         f'image shape {tuple(image.shape[:2])} (H, W)')
    image = image.astype(np.float32)
    if np.issubdtype(np.asarray(img).dtype, np.integer):
        image = image / 255.
    if bgr:
        image = image[..., ::-1]
    colour = colorize_heatmap(heat, cmap).astype(np.float32) / 255.
    out = (1. - image_weight) * colour + image_weight * np.clip(image, 0, 1)
    out = np.ascontiguousarray(np.round(out * 255).astype(np.uint8))
    return add_colorbar(out, cmap, title) if colorbar else out


def _tile_rgb(tile: np.ndarray) -> np.ndarray:
    tile = np.asarray(tile)
    if tile.ndim == 2:
        tile = np.repeat(tile[..., None], 3, axis=2)
    if tile.ndim != 3 or tile.shape[2] != 3 or tile.dtype != np.uint8:
        raise ValueError(f'gallery tiles must be (H, W, 3) or (H, W) uint8, '
                         f'got shape {tuple(tile.shape)} {tile.dtype}')
    return tile


def fit_tile(tile: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """``tile`` resized to ``size`` (w, h) as the gallery draws it (area
    averaging to shrink, bilinear to grow); unchanged if it fits already."""
    tw, th = size
    if tile.shape[:2] == (th, tw):
        return tile
    interp = cv2.INTER_AREA if tile.shape[0] > th else cv2.INTER_LINEAR
    return cv2.resize(tile, (tw, th), interpolation=interp)


def make_gallery(tiles: Sequence[np.ndarray],
                 ncols: Optional[int] = None,
                 tile_size: Optional[SizeType] = None,
                 titles: Optional[Sequence[str]] = None,
                 pad: int = 4,
                 background: int = 255) -> np.ndarray:
    """Arrange pictures in a grid, each with an optional caption below it.

    Args:
        tiles (Sequence[ndarray]): (H, W, 3) or (H, W) uint8 pictures, e.g.
            :func:`overlay_heatmap` outputs. The channel order is kept.
        ncols (int, optional): Columns; ``ceil(sqrt(len(tiles)))`` if None.
        tile_size (int | tuple, optional): ``(w, h)`` every tile is resized
            to, or an int: the longest side (aspect ratio of the first tile).
            If None, the first tile's size.
        titles (Sequence[str], optional): One caption per tile (e.g. index
            and score); shrunk to fit the tile width.
        pad (int): Pixels between tiles and around the grid.
        background (int): Grey level of the background and caption bars.

    Returns:
        ndarray: (H, W, 3) uint8 grid, same channel order as the tiles.

    Raises:
        ValueError: For no tiles, a bad tile, or a titles length mismatch.
    """
    tiles = [_tile_rgb(t) for t in tiles]
    if not tiles:
        raise ValueError('make_gallery needs at least one tile')
    if titles is not None and len(titles) != len(tiles):
        raise ValueError(f'got {len(titles)} titles for {len(tiles)} tiles')
    h0, w0 = tiles[0].shape[:2]
    if tile_size is None:
        tw, th = w0, h0
    elif isinstance(tile_size, (int, np.integer)):
        scale = int(tile_size) / max(h0, w0)
        tw, th = max(1, round(w0 * scale)), max(1, round(h0 * scale))
    else:
        tw, th = (int(v) for v in tile_size)
    if tw < 1 or th < 1:
        raise ValueError(f'tile_size must be positive, got {tile_size!r}')
    n = len(tiles)
    ncols = int(ncols) if ncols else int(math.ceil(math.sqrt(n)))
    ncols = max(1, min(ncols, n))
    nrows = int(math.ceil(n / ncols))
    cap_h = 0
    scale = 0.4
    if titles is not None:
        scale = min(_fit_font_scale(str(t), tw - 2, 0.4) for t in titles)
        (_, text_h), base = cv2.getTextSize('Ag', _FONT, scale, 1)
        cap_h = text_h + base + 4
    cell_w, cell_h = tw + pad, th + cap_h + pad
    canvas = np.full((nrows * cell_h + pad, ncols * cell_w + pad, 3),
                     background, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        y, x = pad + r * cell_h, pad + c * cell_w
        canvas[y:y + th, x:x + tw] = fit_tile(tile, (tw, th))
        if titles is not None:
            (_, text_h), _ = cv2.getTextSize('Ag', _FONT, scale, 1)
            cv2.putText(canvas, str(titles[i]), (x + 1, y + th + text_h + 2),
                        _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def encode_rgb_png(rgb: np.ndarray) -> bytes:
    """The PNG file bytes of an RGB (or grey) uint8 array."""
    rgb = np.asarray(rgb)
    bgr = rgb[..., ::-1] if rgb.ndim == 3 else rgb
    ok, data = cv2.imencode('.png', np.ascontiguousarray(bgr))
    if not ok:
        raise ValueError(f'cannot encode a {rgb.shape} {rgb.dtype} array as '
                         'PNG')
    return data.tobytes()


def save_rgb_png(path: Union[str, os.PathLike], rgb: np.ndarray) -> None:
    """Write an RGB uint8 array as an image file (OpenCV wants BGR)."""
    rgb = np.asarray(rgb)
    bgr = rgb[..., ::-1] if rgb.ndim == 3 else rgb
    if not cv2.imwrite(os.fspath(path), np.ascontiguousarray(bgr)):
        raise OSError(f'could not write image {os.fspath(path)}')
