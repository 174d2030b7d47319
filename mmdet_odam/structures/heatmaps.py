"""Heat maps of detections, each kept where it was computed.

An ODAM map is computed on a feature grid (stride 8-128) and, for dense heads
and RoIs, is non-zero only in a local window. Materialising every map at the
original image's resolution, ``(N, T, H_ori, W_ori)`` float32, costs memory
that grows with the photo (12 MP: 49 MB per map). :class:`HeatMaps` stores
each map as one or more *windows* (components): values on a cell grid with
its stride (or on input pixels), and where the window lies. Memory is
O(N x T x window). Maps are rendered to the original image (or another size,
dtype, device) on demand, for any subset of detections and targets, the way
MMDetection's ``BitmapMasks`` / ``PolygonMasks`` render ``to_tensor()``.

Geometry (input = the resized, unpadded network input, ``img_shape``):

* a ``'cells'`` window holds (M, h, w) values on a level's cell grid; entry
  m's cell (0, 0) is cell ``corners[m]`` of the level; it is upsampled with
  :func:`~mmdet_odam.explainers.heatmap.upsample_cells` (heat beyond the
  window is zero, so a window renders to exactly the pixels of the whole
  map; values at cells outside the level grid must be zero, as they are in
  windows of zero-padded maps);
* a ``'pixels'`` window holds (M, h, w) values on input pixels, entry m's
  pixel (0, 0) at input pixel ``corners[m]``;
* a ``'original'`` window holds (M, h, w) values on original-image pixels.

Input-pixel maps are cropped to ``img_shape`` and resized to ``ori_shape``
bilinearly (``align_corners=False``, as ``F.interpolate``), restricted to each
window's footprint. Several windows of one map (several feature levels) are
summed, or combined by maximum (``fusion='max'``).

Values: each stored map is divided by its peak on the original image (peak
magnitude for signed maps, ``grad_mode='pos'``), so maps lie in [0, 1] (or
[-1, 1]); an all-zero map stays zero. ``'combined'`` is the element-wise
maximum of the normalised attribute maps of the same detection.
"""
from dataclasses import dataclass, replace
from typing import Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

KINDS = ('cells', 'pixels', 'original')
COMBINED = 'combined'
IndexLike = Union[int, slice, list, np.ndarray, Tensor]


@dataclass
class MapWindows:
    """Windows of the same size and geometry, one per (detection, map) entry.

    Attributes:
        rows (Tensor): Stored map of each entry, ``det * num_slots + slot``,
            (M, ) long.
        values (Tensor): (M, h, w).
        corners (Tensor): (y, x) of each window's first value, (M, 2) long: in
            cells of the level (``'cells'``), input pixels (``'pixels'``) or
            original pixels (``'original'``).
        kind (str): One of :data:`KINDS`.
        stride (int): Input pixels per cell (``'cells'`` only).
        cell_position (str): ``'grid'`` or ``'receptive_field'`` (``'cells'``).
    """
    rows: Tensor
    values: Tensor
    corners: Tensor
    kind: str = 'pixels'
    stride: int = 1
    cell_position: str = 'grid'

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f'kind must be one of {KINDS}, got {self.kind!r}')
        if self.values.dim() != 3 or len(self.rows) != len(self.values) or \
                self.corners.shape != (len(self.rows), 2):
            raise ValueError(
                f'windows need rows (M,), values (M, h, w), corners (M, 2); '
                f'got {tuple(self.rows.shape)}, {tuple(self.values.shape)}, '
                f'{tuple(self.corners.shape)}')

    def select(self, keep: Tensor, new_rows: Tensor) -> 'MapWindows':
        """Entries ``keep`` (bool or index), with their rows renumbered."""
        return replace(self, rows=new_rows, values=self.values[keep],
                       corners=self.corners[keep])

    def input_pixels(self) -> Tuple[Tensor, Tensor]:
        """Values and top-left corners on the input (or original) pixel grid,
        ((M, h', w'), (M, 2))."""
        if self.kind != 'cells':
            return self.values, self.corners
        pixels = _math().upsample_cells(self.values, self.stride, margin=True,
                                        cell_position=self.cell_position)
        # with the margin the output starts one cell before the window
        return pixels, (self.corners - 1) * self.stride


def _math():
    """:mod:`mmdet_odam.explainers.heatmap`, the pure map math (imported
    late: the explainers build HeatMaps, so the package imports this one)."""
    from ..explainers import heatmap
    return heatmap


class HeatMaps:
    """N detections x T heat maps, stored as windows (module docstring).

    Works as an ``InstanceData`` field: ``len()``, indexing along detections
    (int, slice, list, bool / long tensor) returning ``HeatMaps``, and
    :meth:`cat`. A tuple index renders: ``heatmaps[i, t]`` is the (H, W)
    tensor of detection i's map t, ``heatmaps[:, t]`` the (N, H, W) maps of
    target t.

    Args:
        num_dets (int): N.
        targets (Sequence[str]): Names of the T maps, in order; attribute
            names map to stored slots, ``'combined'`` is computed.
        slots (Sequence[str]): Names of the stored maps (every attribute a
            target or ``'combined'`` needs), ``det * len(slots) + slot`` rows.
        img_shape (tuple): (h, w) of the unpadded network input.
        ori_shape (tuple): (h, w) of the original image.
        windows (Sequence[MapWindows]): The maps' values (raw, unnormalised).
        fusion (str): ``'sum'`` or ``'max'`` of several windows of one map.
        signed (bool): Maps may be negative (normalised by peak magnitude).
        peaks (Tensor, optional): Known per stored map divisors, (N * S, );
            computed from the windows when None.
    """

    def __init__(self, num_dets: int, targets: Sequence[str],
                 slots: Sequence[str], img_shape: Sequence[int],
                 ori_shape: Sequence[int],
                 windows: Sequence[MapWindows] = (), fusion: str = 'sum',
                 signed: bool = False, peaks: Optional[Tensor] = None,
                 device: Union[str, torch.device, None] = None) -> None:
        self.num_dets = int(num_dets)
        self.targets = tuple(targets)
        self.slots = tuple(slots)
        missing = [t for t in self.targets
                   if t != COMBINED and t not in self.slots]
        if missing:
            raise ValueError(f'targets {missing} are not among the stored '
                             f'maps {self.slots}')
        if fusion not in ('sum', 'max'):
            raise ValueError(f"fusion must be 'sum' or 'max', got {fusion!r}")
        self.img_shape = (int(img_shape[0]), int(img_shape[1]))
        self.ori_shape = (int(ori_shape[0]), int(ori_shape[1]))
        self.windows = [w for w in windows if len(w.rows)]
        self.fusion = fusion
        self.signed = bool(signed)
        if device is None:
            device = self.windows[0].values.device if self.windows else 'cpu'
        self.device = torch.device(device)
        self.peaks = self._compute_peaks() if peaks is None else peaks

    # -- construction --------------------------------------------------------
    @classmethod
    def from_dense(cls, maps: Tensor, targets: Sequence[str],
                   slots: Optional[Sequence[str]] = None,
                   img_shape: Optional[Sequence[int]] = None,
                   signed: bool = False) -> 'HeatMaps':
        """Maps already on the original image, (N, S, H, W), raw values (each
        is normalised by its peak like every other map); ``slots`` name the S
        stored maps (default: ``targets``)."""
        slots = tuple(targets if slots is None else slots)
        n, s, h, w = maps.shape
        if s != len(slots):
            raise ValueError(f'{s} dense maps for slots {slots}')
        rows = torch.arange(n * s, device=maps.device)
        windows = [MapWindows(rows, maps.reshape(n * s, h, w),
                              rows.new_zeros((n * s, 2)), 'original')]
        return cls(n, targets, slots, img_shape or (h, w), (h, w), windows,
                   signed=signed)

    # -- InstanceData field protocol ----------------------------------------
    def __len__(self) -> int:
        return self.num_dets

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        """(N, T, H_ori, W_ori) of the rendered maps."""
        return (self.num_dets, len(self.targets)) + self.ori_shape

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_dets={self.num_dets}, '
                f'targets={self.targets}, ori_shape={self.ori_shape}, '
                f'windows={len(self.windows)}, stored_values='
                f'{sum(w.values.numel() for w in self.windows)})')

    def _det_index(self, item: IndexLike) -> Tensor:
        """Detection indices (K, ) of an index along detections."""
        if isinstance(item, int):
            if not -self.num_dets <= item < self.num_dets:
                raise IndexError(f'detection {item} out of range '
                                 f'({self.num_dets})')
            return torch.tensor([item % self.num_dets])
        if isinstance(item, slice):
            return torch.arange(self.num_dets)[item]
        index = torch.as_tensor(np.asarray(item) if isinstance(
            item, list) else item)
        if index.dtype == torch.bool:
            if len(index) != self.num_dets:
                raise IndexError(f'boolean index of length {len(index)} for '
                                 f'{self.num_dets} detections')
            return index.cpu().nonzero()[:, 0]
        index = index.long().cpu().reshape(-1)
        if len(index) and (index.max() >= self.num_dets or
                           index.min() < -self.num_dets):
            raise IndexError(f'detection index out of range '
                             f'({self.num_dets})')
        return index % max(self.num_dets, 1)

    def __getitem__(self, item):
        if isinstance(item, tuple):  # (dets, targets, ...): render
            dets, rest = item[0], item[1:]
            det_ids = self._det_index(dets)
            maps = self.render(det_ids)
            if isinstance(dets, int):
                return maps[0][rest] if rest else maps[0]
            return maps[(slice(None), ) + rest]
        return self.select(self._det_index(item))

    def select(self, det_ids: Tensor) -> 'HeatMaps':
        """The maps of detections ``det_ids`` (K, ), in that order."""
        det_ids = torch.as_tensor(det_ids, dtype=torch.long).cpu()
        num_slots = len(self.slots)
        flat = (det_ids[:, None] * num_slots +
                torch.arange(num_slots)[None]).reshape(-1)
        windows = []
        for win in self.windows:
            # an entry may be selected several times (repeated indices)
            match = win.rows.cpu()[None, :] == flat[:, None]  # (K*S, M)
            new_row, entry = match.nonzero(as_tuple=True)
            if len(entry):
                entry = entry.to(win.rows.device)
                windows.append(win.select(entry, new_row.to(win.rows.device)))
        return HeatMaps(len(det_ids), self.targets, self.slots, self.img_shape,
                        self.ori_shape, windows, self.fusion, self.signed,
                        peaks=self.peaks[flat.to(self.peaks.device)],
                        device=self.device)

    @staticmethod
    def cat(heatmaps_list: Sequence['HeatMaps']) -> 'HeatMaps':
        """Concatenate along detections (same targets and image)."""
        first = heatmaps_list[0]
        for other in heatmaps_list[1:]:
            if (other.targets, other.slots, other.img_shape, other.ori_shape,
                    other.fusion, other.signed) != (
                        first.targets, first.slots, first.img_shape,
                        first.ori_shape, first.fusion, first.signed):
                raise ValueError('cannot concatenate HeatMaps of different '
                                 'targets, images or fusion')
        windows, peaks, offset = [], [], 0
        num_slots = len(first.slots)
        for hm in heatmaps_list:
            windows += [replace(w, rows=w.rows + offset * num_slots)
                        for w in hm.windows]
            peaks.append(hm.peaks)
            offset += hm.num_dets
        return HeatMaps(offset, first.targets, first.slots, first.img_shape,
                        first.ori_shape, windows, first.fusion, first.signed,
                        peaks=torch.cat(peaks), device=first.device)

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored windows."""
        return sum(w.values.numel() * w.values.element_size()
                   for w in self.windows)

    # -- rendering -------------------------------------------------------------
    def _resampling(self, win: MapWindows, size: Tuple[int, int]
                    ) -> Iterator[Tuple[int, Tensor, int, int, Optional[Tensor],
                                        Optional[Tensor]]]:
        """Per entry of ``win``: its values on the input (or original) pixel
        grid cropped to that image, their top-left pixel, and the bilinear
        matrices' columns that resample them to ``size`` (None when no
        resampling is needed)."""
        pixels, corners = win.input_pixels()
        src_shape = self.ori_shape if win.kind == 'original' else \
            self.img_shape
        resize = tuple(size) != src_shape
        if resize:
            mat_y = _math().bilinear_matrix(src_shape[0], size[0], pixels)
            mat_x = _math().bilinear_matrix(src_shape[1], size[1], pixels)
        h, w = pixels.shape[-2:]
        for entry, (top, left) in enumerate(corners.tolist()):
            # crop to the unpadded input (or original image)
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + h, src_shape[0]), min(left + w, src_shape[1])
            if y1 <= y0 or x1 <= x0:
                continue
            part = pixels[entry, y0 - top:y1 - top, x0 - left:x1 - left]
            if resize:
                yield entry, part, y0, x0, mat_y[:, y0:y1], mat_x[:, x0:x1]
            else:
                yield entry, part, y0, x0, None, None

    def _footprints(self, win: MapWindows, size: Tuple[int, int]
                    ) -> Iterator[Tuple[int, Tensor, int, int]]:
        """(entry, values, top, left) of each entry of ``win`` on a ``size``
        grid of the original image, restricted to its non-zero footprint."""
        for entry, part, y0, x0, cols_y, cols_x in self._resampling(win, size):
            if cols_y is None:
                yield entry, part, y0, x0
                continue
            rows_y = cols_y.any(dim=1).nonzero()[:, 0]
            rows_x = cols_x.any(dim=1).nonzero()[:, 0]
            if not len(rows_y) or not len(rows_x):
                continue
            r0, r1 = int(rows_y[0]), int(rows_y[-1]) + 1
            c0, c1 = int(rows_x[0]), int(rows_x[-1]) + 1
            yield entry, cols_y[r0:r1] @ part @ cols_x[c0:c1].T, r0, c0

    def _render_rows(self, rows: Tensor, size: Tuple[int, int]) -> Tensor:
        """Raw (unnormalised) stored maps ``rows`` (R, ) on a ``size`` grid,
        (R, H, W)."""
        out = torch.zeros((len(rows), ) + tuple(size), device=self.device)
        if not len(rows):
            return out
        position = torch.full((self.num_dets * len(self.slots), ), -1,
                              dtype=torch.long)
        position[rows.cpu()] = torch.arange(len(rows))
        seen = torch.zeros(len(rows), dtype=torch.bool)
        for win in self.windows:
            where = position[win.rows.cpu()]
            wanted = (where >= 0).nonzero()[:, 0]
            if not len(wanted):
                continue
            sub = win.select(wanted.to(win.rows.device), win.rows[
                wanted.to(win.rows.device)])
            for entry, part, top, left in self._footprints(sub, size):
                r = int(where[wanted[entry]])
                target = out[r, top:top + part.shape[0],
                             left:left + part.shape[1]]
                part = part.to(target)
                if self.fusion == 'max' and bool(seen[r]):
                    torch.maximum(target, part, out=target)
                elif self.fusion == 'max':
                    target.copy_(part)
                else:
                    target += part
                seen[r] = True
        return out

    def _compute_peaks(self, chunk: int = 64) -> Tensor:
        """Peak (magnitude) of every stored map on the original image."""
        total = self.num_dets * len(self.slots)
        peaks = torch.zeros(total, device=self.device)
        counts = torch.zeros(total, dtype=torch.long)
        for win in self.windows:
            counts.index_add_(0, win.rows.cpu(), torch.ones_like(
                win.rows.cpu()))
        single = set((counts == 1).nonzero()[:, 0].tolist())
        for win in self.windows:
            rows = win.rows.cpu().tolist()
            for entry, part, _, _, cols_y, cols_x in self._resampling(
                    win, self.ori_shape):
                if rows[entry] not in single:
                    continue
                if cols_y is None:
                    value = part.abs().max() if self.signed else part.max()
                else:  # the peak of the resampled window, not all of it
                    value = _math().resampled_peak(part, cols_y, cols_x,
                                                   self.signed)
                peaks[rows[entry]] = value.clamp(min=0)
        several = (counts > 1).nonzero()[:, 0]
        for start in range(0, len(several), chunk):
            rows = several[start:start + chunk]
            maps = self._render_rows(rows, self.ori_shape).flatten(1)
            peaks[rows.to(peaks.device)] = (
                maps.abs() if self.signed else maps).amax(1).clamp(min=0)
        return peaks

    def render(self, det_ids: Optional[Sequence[int]] = None,
               targets: Optional[Sequence[str]] = None,
               size: Optional[Sequence[int]] = None,
               dtype: torch.dtype = torch.float32,
               device: Union[str, torch.device, None] = None) -> Tensor:
        """Normalised maps of some detections and targets.

        Args:
            det_ids (Sequence[int], optional): Detections (default: all).
            targets (Sequence[str], optional): Targets (default: all, in
                order).
            size (tuple, optional): (H, W) of the output (default: the
                original image); the maps are resampled bilinearly.
            dtype (torch.dtype): Output dtype.
            device: Output device (default: where the windows are).

        Returns:
            Tensor: (K, T', H, W).
        """
        det_ids = torch.arange(self.num_dets) if det_ids is None else \
            torch.as_tensor(det_ids, dtype=torch.long).cpu().reshape(-1)
        targets = self.targets if targets is None else tuple(targets)
        unknown = [t for t in targets if t not in self.targets]
        if unknown:
            raise ValueError(f'targets {unknown} not among {self.targets}')
        size = self.ori_shape if size is None else (int(size[0]),
                                                    int(size[1]))
        num_slots = len(self.slots)
        needed = list(range(num_slots)) if COMBINED in targets else \
            [self.slots.index(t) for t in targets]
        rows = (det_ids[:, None] * num_slots +
                torch.as_tensor(needed)[None]).reshape(-1)
        raw = self._render_rows(rows, size)
        peaks = self.peaks[rows.to(self.peaks.device)].clamp(min=1e-12)
        raw = raw.div_(peaks[:, None, None]).view(len(det_ids), len(needed),
                                                   *size)
        if size != self.ori_shape:  # resampled from the input grid: the
            # peak of the original-image rendering may be exceeded slightly
            raw = raw.clamp_(-1.0 if self.signed else 0.0, 1.0)
        out = []
        for target in targets:
            if target == COMBINED:
                out.append(raw.amax(dim=1))
            else:
                out.append(raw[:, needed.index(self.slots.index(target))])
        maps = torch.stack(out, dim=1) if out else raw[:, :0]
        return maps.to(device=device or self.device, dtype=dtype)

    def to_tensor(self, dtype: torch.dtype = torch.float32,
                  device: Union[str, torch.device, None] = None) -> Tensor:
        """All maps on the original image, (N, T, H_ori, W_ori) (memory grows
        with the image: prefer :meth:`render` of a few detections)."""
        return self.render(dtype=dtype, device=device)

    def to_ndarray(self, dtype=np.float32) -> np.ndarray:
        """All maps on the original image as a numpy array."""
        return self.to_tensor().cpu().numpy().astype(dtype, copy=False)


__all__ = ['HeatMaps', 'MapWindows', 'KINDS']
