"""Colour bars and names on pictures, show_cam_on_image, the grid layout of
save_explanation and the MMDetection-native HeatMapVisualizer."""
import cv2
import matplotlib
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmdet_odam.apis.export import save_explanation
from mmdet_odam.structures import HeatMaps
from mmdet_odam.visualization import add_colorbar, show_cam_on_image

H, W = 48, 64


def _cmap_rgb(name: str, value: float) -> np.ndarray:
    return np.array(matplotlib.colormaps[name](value)[:3]) * 255


def _bar_row(band: np.ndarray) -> np.ndarray:
    """The columns of the colour bar in the middle row of a legend band."""
    row = band[band.shape[0] // 2].astype(int)
    coloured = np.nonzero(np.ptp(row, axis=1) > 40)[0]  # not grey / text
    return row[coloured]


@pytest.mark.parametrize('cmap', ['jet', 'viridis'])
def test_add_colorbar_keeps_picture_and_spans_the_colormap(cmap):
    pic = np.random.default_rng(0).integers(0, 255, (H, 200, 3), np.uint8)
    out = add_colorbar(pic, cmap, 'x2 map')
    assert out.shape[1:] == (200, 3) and out.shape[0] > H
    np.testing.assert_array_equal(out[:H], pic)
    bar = _bar_row(out[H:])
    assert len(bar) > 40
    np.testing.assert_allclose(bar[0], _cmap_rgb(cmap, 0.), atol=12)
    np.testing.assert_allclose(bar[-1], _cmap_rgb(cmap, 1.), atol=12)
    # the title is written: dark pixels left of the bar
    left = out[H:, :40].astype(int).sum(2)
    assert (left < 200).any()
    with pytest.raises(ValueError, match='colormap'):
        add_colorbar(pic, 'no_such_map')


def test_show_cam_on_image_blends_as_documented():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (H, W, 3), np.uint8)
    heat = rng.integers(0, 256, (H, W)) / 255.  # exact colormap entries
    out = show_cam_on_image(img, heat, image_weight=0.3, colorbar=False)
    colour = matplotlib.colormaps['jet'](heat)[..., :3]
    want = 0.7 * colour * 255 + 0.3 * img
    np.testing.assert_allclose(out, want, atol=1.01)
    # float RGB in [0, 1] and BGR uint8 give the same picture
    np.testing.assert_array_equal(
        show_cam_on_image(img / 255., heat, 0.3, colorbar=False), out)
    np.testing.assert_array_equal(
        show_cam_on_image(img[..., ::-1], heat, 0.3, colorbar=False,
                          bgr=True), out)
    with_bar = show_cam_on_image(img, torch.from_numpy(heat), 0.3,
                                 title='score map')
    np.testing.assert_array_equal(with_bar[:H], out)
    with pytest.raises(ValueError, match='shape'):
        show_cam_on_image(img, heat[:10])


def _sample(num: int = 2) -> DetDataSample:
    """Detections with one Gaussian blob per map at a known place."""
    yy, xx = np.mgrid[:H, :W]
    targets = ('score', 'x1', 'y1', 'x2', 'y2')
    maps = np.zeros((num, len(targets), H, W), np.float32)
    for i in range(num):
        for t in range(len(targets)):
            maps[i, t] = np.exp(-((xx - 10 - 20 * i - 3 * t) ** 2 +
                                  (yy - 20) ** 2) / 20.)
    pred = InstanceData(
        bboxes=torch.tensor([[4., 10., 24., 30.], [24., 10., 44., 30.]])[:num],
        scores=torch.tensor([0.9, 0.6])[:num],
        labels=torch.zeros(num, dtype=torch.long))
    pred.heatmaps = HeatMaps.from_dense(torch.from_numpy(maps), targets)
    sample = DetDataSample(metainfo=dict(targets=targets, ori_shape=(H, W),
                                         img_shape=(H, W)))
    sample.pred_instances = pred
    return sample


@pytest.mark.parametrize('layout, grids, separate', [
    ('grid', True, False), ('both', True, True), ('separate', False, True)])
def test_grid_layout(tmp_path, layout, grids, separate):
    image = np.full((H, W, 3), 90, np.uint8)
    save_explanation(_sample(), image, str(tmp_path), 'img', layout=layout)
    names = {p.name for p in (tmp_path / 'img').glob('det*.png')}
    assert ({'det000_grid.png', 'det001_grid.png'} <= names) == grids
    assert ('det000_x2.png' in names) == separate
    if grids:
        grid = cv2.imread(str(tmp_path / 'img' / 'det000_grid.png'))
        assert grid.shape[1] > 5 * W  # five maps side by side
    gallery = cv2.imread(str(tmp_path / 'img' / 'gallery.png'))
    bar = _bar_row(gallery[-max(16, round(gallery.shape[1] / 14)):, :, ::-1])
    np.testing.assert_allclose(bar[-1], _cmap_rgb('jet', 1.), atol=12)
    with pytest.raises(ValueError, match='layout'):
        save_explanation(_sample(), image, str(tmp_path / 'x'), 'img',
                         layout='mosaic')


def test_heatmap_visualizer_sends_maps_to_vis_backends(tmp_path):
    import mmdet_odam  # noqa: F401  (registers the visualizer)
    from mmdet.registry import VISUALIZERS
    visualizer = VISUALIZERS.build(dict(
        type='HeatMapVisualizer', name='test_heatmap_visualizer',
        target='score', detection=0, image_weight=0.5,
        vis_backends=[dict(type='LocalVisBackend')], save_dir=str(tmp_path)))
    visualizer.dataset_meta = dict(classes=('person', ))
    image = np.full((H, W, 3), 100, np.uint8)
    sample = _sample()
    visualizer.add_datasample('crowd', image, sample, draw_gt=False,
                              pred_score_thr=0.3)
    written = list(tmp_path.rglob('crowd_0.png'))
    assert len(written) == 1, list(tmp_path.rglob('*'))
    out = cv2.imread(str(written[0]))[..., ::-1].astype(float)
    assert out.shape[1] == W and out.shape[0] > H  # legend band below
    heat = sample.pred_instances.heatmaps[0, 0].numpy()
    # away from boxes and text the pixel is the documented blend
    # the documented blend away from boxes and text, and inside the box
    # under its label (where the map is warm)
    for y, x in ((42, 60), (26, 12), (24, 14)):
        want = 0.5 * _cmap_rgb('jet', round(heat[y, x] * 255) / 255) + 50
        np.testing.assert_allclose(out[y, x], want, atol=2)
    assert heat[24, 14] > 0.2
