"""``HeatMaps``: windows rendered on demand equal the same maps computed
densely with ``F.interpolate``; it works as an ``InstanceData`` field; its
memory does not grow with the original image."""
import pickle

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData

from mmdet_odam.structures import HeatMaps, MapWindows

STRIDE = 8
GRID = (12, 16)          # level grid (cells)
IMG = (90, 125)          # unpadded input: the grid covers 96 x 128


def _dense_reference(cells, stride, img_shape, ori_shape):
    """A full cell map (H, W) -> original image: bilinear between cell
    centres with zero heat beyond the grid, cropped to the input, resized."""
    up = F.interpolate(F.pad(cells, (1, 1, 1, 1))[None, None],
                       scale_factor=stride, mode='bilinear')
    up = up[..., stride:stride + img_shape[0], stride:stride + img_shape[1]]
    if tuple(ori_shape) != tuple(img_shape):
        up = F.interpolate(up, size=tuple(ori_shape), mode='bilinear',
                           align_corners=False)
    return up[0, 0]


def _windows(num, seed=0, size=(5, 6)):
    """Random non-negative windows and their corners, some reaching past
    the grid's edge (zero there, as windows of a zero-padded map are)."""
    g = torch.Generator().manual_seed(seed)
    values = torch.rand((num, ) + size, generator=g)
    corners = torch.stack([
        torch.randint(-2, GRID[0] - 2, (num, ), generator=g),
        torch.randint(-2, GRID[1] - 2, (num, ), generator=g)], dim=1)
    rows = corners[:, :1, None] + torch.arange(size[0])[None, :, None]
    cols = corners[:, 1:, None] + torch.arange(size[1])[None, None, :]
    inside = (rows >= 0) & (rows < GRID[0]) & (cols >= 0) & (cols < GRID[1])
    return values * inside, corners


def _full_grid(value, corner):
    grid = torch.zeros(GRID[0] + 20, GRID[1] + 20)
    y, x = corner.tolist()
    h, w = value.shape
    grid[y + 10:y + 10 + h, x + 10:x + 10 + w] = value
    return grid[10:10 + GRID[0], 10:10 + GRID[1]]


@pytest.mark.parametrize('ori_shape', [IMG, (181, 250), (45, 61)])
def test_render_equals_dense_computation(ori_shape):
    n, slots = 3, ('score', 'x1')
    values, corners = _windows(n * len(slots))
    rows = torch.arange(n * len(slots))
    hm = HeatMaps(n, ('x1', 'score', 'combined'), slots, IMG, ori_shape,
                  [MapWindows(rows, values, corners, 'cells', STRIDE)])
    assert hm.shape == (n, 3) + tuple(ori_shape)
    got = hm.to_tensor()
    for det in range(n):
        expected = []
        for s in range(len(slots)):
            r = det * len(slots) + s
            dense = _dense_reference(_full_grid(values[r], corners[r]),
                                     STRIDE, IMG, ori_shape)
            expected.append(dense / dense.max().clamp(min=1e-12))
        torch.testing.assert_close(got[det, 0], expected[1], atol=1e-5,
                                   rtol=0)
        torch.testing.assert_close(got[det, 1], expected[0], atol=1e-5,
                                   rtol=0)
        torch.testing.assert_close(got[det, 2],
                                   torch.maximum(*expected), atol=1e-5,
                                   rtol=0)
        assert got[det, :2].flatten(1).amax(1).allclose(torch.ones(2))


def test_several_windows_of_a_map_sum_or_max():
    values, corners = _windows(2, seed=1)
    rows = torch.zeros(2, dtype=torch.long)  # both windows: one map
    dense = [_dense_reference(_full_grid(v, c), STRIDE, IMG, IMG)
             for v, c in zip(values, corners)]
    for fusion, combine in (('sum', torch.add), ('max', torch.maximum)):
        hm = HeatMaps(1, ('score', ), ('score', ), IMG, IMG, [
            MapWindows(rows[:1], values[:1], corners[:1], 'cells', STRIDE),
            MapWindows(rows[1:], values[1:], corners[1:], 'cells', STRIDE)
        ], fusion=fusion)
        expected = combine(*dense)
        torch.testing.assert_close(hm[0, 0], expected / expected.max(),
                                   atol=1e-5, rtol=0)


def test_signed_maps_are_scaled_by_peak_magnitude():
    values = torch.tensor([[[0.5, -2.0], [1.0, 0.0]]])
    hm = HeatMaps(1, ('x1', ), ('x1', ), (2, 2), (2, 2), [MapWindows(
        torch.tensor([0]), values, torch.zeros(1, 2, dtype=torch.long),
        'pixels')], signed=True)
    torch.testing.assert_close(hm[0, 0], values[0] / 2.0)


def test_instance_data_indexing_and_cat_follow_detections():
    n, slots = 5, ('score', )
    values, corners = _windows(n, seed=2)
    hm = HeatMaps(n, ('score', ), slots, IMG, (181, 250),
                  [MapWindows(torch.arange(n), values, corners, 'cells',
                              STRIDE)])
    full = hm.to_tensor()
    inst = InstanceData(scores=torch.arange(n).float(), heatmaps=hm)
    for index in (torch.tensor([3, 0, 3]), torch.tensor(
            [True, False, True, False, True]), slice(1, 4), 2):
        sub = inst[index]
        expected = inst.scores[index].long().reshape(-1)
        assert len(sub.heatmaps) == len(expected)
        torch.testing.assert_close(sub.heatmaps.to_tensor(), full[expected])
    both = InstanceData.cat([inst[torch.tensor([4])], inst[:2]])
    torch.testing.assert_close(both.heatmaps.to_tensor(),
                               full[torch.tensor([4, 0, 1])])
    empty = inst[torch.zeros(n, dtype=torch.bool)]
    assert empty.heatmaps.to_tensor().shape == (0, 1, 181, 250)


def test_memory_does_not_grow_with_the_original_image():
    values, corners = _windows(4, seed=3)
    sizes = {}
    for ori in ((90, 125), (3024, 4032)):
        hm = HeatMaps(4, ('score', ), ('score', ), IMG, ori, [MapWindows(
            torch.arange(4), values, corners, 'cells', STRIDE)])
        sizes[ori] = hm.nbytes
        one = hm.render([1])
        assert one.shape == (1, 1) + ori and one.max() == 1
    assert sizes[(90, 125)] == sizes[(3024, 4032)] == values.numel() * 4


def test_pickles_and_renders_the_same():
    values, corners = _windows(2, seed=4)
    hm = HeatMaps(2, ('score', ), ('score', ), IMG, (100, 140), [MapWindows(
        torch.arange(2), values, corners, 'cells', STRIDE)])
    again = pickle.loads(pickle.dumps(hm))
    assert torch.equal(again.to_tensor(), hm.to_tensor())


def test_bad_construction_is_a_clear_error():
    with pytest.raises(ValueError, match='not among the stored'):
        HeatMaps(1, ('x2', ), ('score', ), IMG, IMG)
    with pytest.raises(ValueError, match='kind'):
        MapWindows(torch.zeros(1, dtype=torch.long), torch.zeros(1, 2, 2),
                   torch.zeros(1, 2, dtype=torch.long), 'grid')
    with pytest.raises(IndexError):
        HeatMaps(1, ('score', ), ('score', ), IMG, IMG)[3]


def test_tuple_index_renders_like_a_dense_tensor():
    values, corners = _windows(6, seed=5)
    hm = HeatMaps(3, ('score', 'x1', 'combined'), ('score', 'x1'), IMG,
                  (100, 140), [MapWindows(torch.arange(6), values, corners,
                                          'cells', STRIDE)])
    dense = hm.to_tensor()
    for index in ((1, 2), (slice(None), 1), (2, ), (slice(1, 3), 0),
                  (0, slice(None), 5)):
        torch.testing.assert_close(hm[index], dense[index])


@pytest.mark.parametrize('out_size', [(301, 97), (40, 13), (90, 31)])
def test_resampled_peak_equals_the_peak_of_the_full_resampling(out_size):
    from mmdet_odam.explainers.heatmap import bilinear_matrix, resampled_peak
    g = torch.Generator().manual_seed(7)
    for trial in range(20):
        values = torch.rand(90, 31, generator=g) * (
            torch.rand(90, 31, generator=g) > 0.7)
        if trial % 2:
            values = values - 0.5 * torch.rand(90, 31, generator=g)
        mat_y = bilinear_matrix(90, out_size[0], values)
        mat_x = bilinear_matrix(31, out_size[1], values)
        full = mat_y @ values @ mat_x.T
        signed = bool(trial % 2)
        expected = full.abs().max() if signed else full.max().clamp(min=0)
        torch.testing.assert_close(
            resampled_peak(values, mat_y, mat_x, signed).clamp(min=0),
            expected)
