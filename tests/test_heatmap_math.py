"""The pure heat-map functions against hand computations."""
import math

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from mmdet_odam.explainers.heatmap import (adaptive_sigmas, feature_to_image,
                                           gaussian_smooth, normalize_maps,
                                           odam_map, paste_in_boxes,
                                           smooth_gradients, upsample_cells,
                                           weighted_activation_map)


def test_gaussian_smooth_of_delta_is_the_sampled_gaussian():
    grads = torch.zeros(1, 2, 21, 21)
    grads[0, :, 10, 10] = 1.0
    sigma = 1.5
    out = gaussian_smooth(grads, torch.tensor([sigma]))
    radius = math.ceil(3 * sigma)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-taps**2 / (2 * sigma**2))
    g = g / g.sum()
    expected = torch.zeros(21, 21)
    expected[10 - radius:11 + radius, 10 - radius:11 + radius] = g[:, None] * g
    assert torch.allclose(out[0, 0], expected, atol=1e-6)
    assert torch.allclose(out[0, 1], expected, atol=1e-6)
    assert out.sum().item() == pytest.approx(2.0, rel=1e-5)  # mass kept


def test_gaussian_smooth_uses_each_samples_sigma():
    grads = torch.zeros(3, 1, 15, 15)
    grads[:, 0, 7, 7] = 1.0
    out = gaussian_smooth(grads, torch.tensor([0.0, 0.8, 2.0]))
    assert torch.equal(out[0], grads[0])  # sigma <= 0: identity
    for n, sigma in ((1, 0.8), (2, 2.0)):
        # each kernel is truncated at its own 3 sigma, whatever the batch
        single = gaussian_smooth(grads[n:n + 1], torch.tensor([sigma]))
        torch.testing.assert_close(out[n], single[0], atol=1e-8, rtol=0)
        assert (out[n, 0, abs(torch.arange(15) - 7) > math.ceil(3 * sigma)]
                == 0).all()
    assert out[2, 0, 7, 7] < out[1, 0, 7, 7]  # wider kernel, lower peak


def test_global_smoothing_reduces_odam_to_gradcam():
    torch.manual_seed(0)
    grads = torch.randn(2, 4, 5, 6)
    acts = torch.rand(4, 5, 6)
    maps = odam_map(grads, acts, smooth='global')
    weights = grads.mean(dim=(2, 3))  # Grad-CAM channel weights
    gradcam = torch.relu(torch.einsum('nc,chw->nhw', weights, acts))
    assert torch.allclose(maps, gradcam, atol=1e-6)


def test_no_smoothing_is_grad_times_activation():
    torch.manual_seed(1)
    grads = torch.randn(3, 4, 5, 5)
    acts = torch.randn(3, 4, 5, 5)
    maps = odam_map(grads, acts, smooth='none')
    assert torch.allclose(maps, torch.relu((grads * acts).sum(1)))


def test_grad_modes_follow_appendix_a56():
    weights = torch.tensor([[[[1.0, -2.0]], [[0.5, 0.5]]]])  # (1, 2, 1, 2)
    acts = torch.tensor([[[2.0, 1.0]], [[2.0, 2.0]]])  # (2, 1, 2)
    signed = torch.tensor([[[3.0, -1.0]]])  # 1*2+.5*2, -2*1+.5*2
    assert torch.equal(weighted_activation_map(weights, acts, 'pos'), signed)
    assert torch.equal(weighted_activation_map(weights, acts, 'pos_relu'),
                       torch.tensor([[[3.0, 0.0]]]))
    assert torch.equal(weighted_activation_map(weights, acts, 'neg_relu'),
                       torch.tensor([[[0.0, 1.0]]]))
    assert torch.equal(weighted_activation_map(weights, acts, 'abs'),
                       torch.tensor([[[3.0, 1.0]]]))
    with pytest.raises(ValueError, match='grad_mode'):
        weighted_activation_map(weights, acts, 'up')


def test_smooth_options_are_validated():
    grads = torch.ones(1, 1, 3, 3)
    with pytest.raises(ValueError, match='sigmas'):
        smooth_gradients(grads, 'adaptive')
    with pytest.raises(ValueError, match='unknown smooth'):
        smooth_gradients(grads, 'box')


@pytest.mark.parametrize('size', [(6, 9), (50, 52)])  # banded / conv path
def test_fixed_sigma_smoothing_equals_scipy_gaussian_filter(size):
    """A fixed sigma smooths every sample and channel with the same Gaussian:
    scipy's, truncated at ceil(3 sigma) cells, zero outside the map."""
    torch.manual_seed(0)
    grads = torch.randn(2, 3, *size, dtype=torch.float64)
    sigma = 1.3
    fixed = smooth_gradients(grads, sigma)
    expected = gaussian_filter(grads.numpy(), sigma, mode='constant',
                               radius=math.ceil(3 * sigma), axes=(2, 3))
    np.testing.assert_allclose(fixed.numpy(), expected, atol=1e-12)


def test_adaptive_sigma_is_a_fraction_of_the_object_in_cells():
    sizes = torch.tensor([[40.0, 90.0], [0.0, 10.0]])
    strides = torch.tensor([8.0, 8.0])
    sigmas = adaptive_sigmas(sizes, strides, sigma_scale=0.2, min_sigma=0.5)
    assert sigmas[0].item() == pytest.approx(0.2 * 60.0 / 8.0)
    assert sigmas[1].item() == 0.5  # degenerate box: the floor


def test_normalize_maps_scales_to_unit_peak_and_keeps_zero_maps():
    maps = torch.zeros(2, 3, 3)
    maps[0, 1, 2] = 4.0
    maps[0, 0, 0] = 1.0
    out = normalize_maps(maps)
    assert out[0].max() == 1.0 and out[0, 0, 0] == 0.25
    assert torch.equal(out[1], torch.zeros(3, 3))
    signed = normalize_maps(torch.tensor([[[-2.0, 1.0]]]), signed=True)
    assert torch.equal(signed, torch.tensor([[[-1.0, 0.5]]]))
    with pytest.raises(ValueError, match='non-negative'):
        normalize_maps(torch.tensor([[[-2.0, -1.0]]]))


def test_feature_to_image_crops_padding_and_places_cells():
    stride = 8
    grid = torch.zeros(1, 5, 5)  # padded batch: 40 px, image only 30x20 px
    grid[0, 1, 2] = 1.0  # covers input pixels y 8..15, x 16..23
    out = feature_to_image(grid, stride, img_shape=(30, 20))
    assert out.shape == (1, 30, 20)
    peak = (out[0] == out[0].max()).nonzero()
    assert peak[:, 0].min() >= 8 and peak[:, 0].max() <= 15
    assert peak[:, 1].min() >= 16 and peak[:, 1].max() <= 19
    # receptive-field centres: the cell sits exactly on pixel (8, 16)
    out = feature_to_image(grid, stride, img_shape=(30, 20),
                           cell_position='receptive_field')
    assert out.shape == (1, 30, 20)
    assert out[0, 8, 16] == 1.0 and int(out[0].argmax()) == 8 * 20 + 16
    assert out[0, 8, 16 - stride] == 0 and out[0, 8 + stride, 16] == 0
    # the original image was larger: maps follow the rescale, a bilinear
    # resize of the input-image map as OpenCV does it
    small = feature_to_image(grid, stride, img_shape=(30, 20))[0]
    for ori_shape in ((60, 40), (45, 50)):
        big = feature_to_image(grid, stride, img_shape=(30, 20),
                               ori_shape=ori_shape)
        expected = cv2.resize(small.numpy(), ori_shape[::-1],
                              interpolation=cv2.INTER_LINEAR)
        assert big.shape == (1, ) + ori_shape
        np.testing.assert_allclose(big[0].numpy(), expected, atol=1e-5)


def test_receptive_field_position_is_the_centre_of_the_gradient_support():
    """Independent truth: the input pixels a cell depends on (autograd) are
    centred on where 'receptive_field' places the cell."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(  # ResNet-like geometry, stride 8
        torch.nn.Conv2d(1, 2, 7, stride=2, padding=3),
        torch.nn.AvgPool2d(3, stride=2, padding=1),
        torch.nn.Conv2d(2, 2, 3, stride=1, padding=1),
        torch.nn.Conv2d(2, 2, 3, stride=2, padding=1),
        torch.nn.Conv2d(2, 1, 1, stride=1))
    for module in net:
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.uniform_(module.weight, 0.1, 1.0)
    image = torch.randn(1, 1, 96, 96, requires_grad=True)
    feat = net(image)
    stride = image.shape[-1] // feat.shape[-1]
    assert stride == 8
    i, j = 5, 6
    grad, = torch.autograd.grad(feat[0, 0, i, j], image)
    rows, cols = grad[0, 0].abs().gt(0).nonzero().unbind(1)
    centre = ((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2)
    one_hot = torch.zeros(1, *feat.shape[-2:])
    one_hot[0, i, j] = 1.0
    placed = upsample_cells(one_hot, stride,
                            cell_position='receptive_field')[0]
    peak = divmod(int(placed.argmax()), placed.shape[-1])
    assert peak == (float(centre[0]), float(centre[1])) == (i * stride,
                                                           j * stride)
    grid = upsample_cells(one_hot, stride)[0]
    assert divmod(int(grid.argmax()), grid.shape[-1]) != peak


def test_paste_in_boxes_stays_inside_the_box():
    maps = torch.ones(2, 7, 7)
    boxes = torch.tensor([[2.0, 3.0, 9.0, 8.0], [-5.0, -5.0, -1.0, -1.0]])
    out = paste_in_boxes(maps, boxes, (12, 12))
    assert torch.equal(out[0].nonzero()[:, 0].unique(), torch.arange(3, 8))
    assert torch.equal(out[0].nonzero()[:, 1].unique(), torch.arange(2, 9))
    assert out[1].abs().sum() == 0  # box outside the canvas: empty map


@pytest.mark.parametrize('cell_position', ['receptive_field', 'grid'])
def test_upsampled_window_equals_the_same_part_of_the_whole_map(
        cell_position):
    torch.manual_seed(0)
    whole = torch.zeros(1, 9, 11)
    window = torch.rand(1, 3, 4)
    whole[0, 2:5, 6:10] = window[0]
    stride = 4
    full = upsample_cells(whole, stride, cell_position=cell_position)[0]
    part = upsample_cells(window, stride, margin=True,
                          cell_position=cell_position)[0]
    top, left = (2 - 1) * stride, (6 - 1) * stride  # one cell of margin
    assert torch.allclose(full[top:top + part.shape[0],
                               left:left + part.shape[1]], part, atol=1e-6)
    rest = full.clone()
    rest[top:top + part.shape[0], left:left + part.shape[1]] = 0
    assert rest.abs().max() == 0  # nothing of the window spills further


@pytest.mark.parametrize('size', [(7, 7), (60, 50)])  # banded / conv path
def test_gaussian_smooth_with_pad_equals_smoothing_the_padded_map(size):
    torch.manual_seed(0)
    grads = torch.randn(3, 4, *size)
    sigmas = torch.tensor([0.0, 0.7, 1.6])
    padded = torch.nn.functional.pad(grads, (5, ) * 4)
    out = gaussian_smooth(grads, sigmas, pad=5)
    assert out.shape == padded.shape
    torch.testing.assert_close(out, gaussian_smooth(padded, sigmas),
                               atol=1e-6, rtol=1e-5)


def test_weighted_map_is_the_same_for_channels_last_inputs():
    torch.manual_seed(0)
    weights, acts = torch.randn(4, 6, 5, 7), torch.randn(4, 6, 5, 7)
    expected = torch.relu((weights * acts).sum(1))
    last = [t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
            for t in (weights, acts)]
    assert last[0].stride(1) == 1  # takes the einsum branch
    torch.testing.assert_close(weighted_activation_map(*last), expected)


@pytest.mark.parametrize('cell_position', ['receptive_field', 'grid'])
@pytest.mark.parametrize('shape,stride', [((3, 1, 1), 4), ((2, 5, 9), 3),
                                          ((4, 13, 13), 8), ((1, 50, 60), 2)])
def test_upsampling_matches_torch_bilinear(shape, stride, cell_position):
    """Matrix path (small maps) and interpolate path (large ones) both equal
    F.interpolate: align_corners=False with s pixels per cell for 'grid',
    align_corners=True with cells s pixels apart for 'receptive_field'."""
    torch.manual_seed(0)
    maps = torch.rand(*shape)
    padded = torch.nn.functional.pad(maps[:, None], (1, 1, 1, 1))
    if cell_position == 'grid':
        expected = torch.nn.functional.interpolate(
            padded, scale_factor=stride, mode='bilinear',
            align_corners=False)[:, 0]
    else:
        size = [(n + 1) * stride + 1 for n in shape[1:]]
        expected = torch.nn.functional.interpolate(
            padded, size=size, mode='bilinear', align_corners=True)[:, 0]
        # the cells themselves are reproduced exactly, s pixels apart
        torch.testing.assert_close(expected[:, stride::stride,
                                            stride::stride][:, :shape[1],
                                                            :shape[2]],
                                   maps)
    torch.testing.assert_close(
        upsample_cells(maps, stride, margin=True,
                       cell_position=cell_position),
        expected, atol=1e-6, rtol=1e-5)


def test_unknown_cell_position_is_refused():
    with pytest.raises(ValueError, match='cell_position'):
        upsample_cells(torch.zeros(1, 2, 2), 4, cell_position='centre')


def test_gaussian_smooth_of_no_maps_keeps_the_padded_shape():
    out = gaussian_smooth(torch.zeros(0, 3, 5, 5), torch.zeros(0), pad=2)
    assert out.shape == (0, 3, 9, 9)


@pytest.mark.parametrize('cell_position', ['receptive_field', 'grid'])
def test_candidate_grid_places_cells_like_the_explainer(cell_position):
    """Odam-NMS/Odam-Train sample windows by block geometry shifted by
    ``cell_shift``: on a pixel-sized grid that is exactly upsample_cells."""
    from mmdet_odam.explainers.heatmap import cell_shift
    from mmdet_odam.models.candidate_maps import resample_to_grid
    torch.manual_seed(0)
    stride, (top, left) = 4, (2, 3)
    window = torch.rand(1, 3, 5)
    whole = torch.zeros(1, 8, 10)
    whole[0, top:top + 3, left:left + 5] = window[0]
    expected = upsample_cells(whole, stride, cell_position=cell_position)
    x1 = left * stride + cell_shift(stride, cell_position)
    y1 = top * stride + cell_shift(stride, cell_position)
    region = torch.tensor([[x1, y1, x1 + 5 * stride, y1 + 3 * stride]])
    out = resample_to_grid(window, region, (32, 40), (32, 40))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
