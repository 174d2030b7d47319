"""BBAM (Lee et al., CVPR 2021, "Bounding Box Attribution Map"): per
detection, the smallest smooth mask over the input that keeps the detection.

For each explained detection a coarse mask ``m`` (``mask_size`` cells, values
in [0, 1], initialised to 1 everywhere: the unmasked image) is upsampled
bilinearly to the network input (:func:`upsample_masks`) and blends the image
with a perturbed copy (:func:`blend`):

    x_M = M * x + (1 - M) * x_p

``x_p`` is the image blurred by a Gaussian of ``blur_sigma`` input pixels
(``perturbation='blur'``, replicate padding at the border) or a constant
pixel value ``constant_value`` (``'constant'``; 0 = black, given in pixels
before the data preprocessor's normalisation). Only the unpadded image
(``img_shape``) is masked; the padding stays as the preprocessor made it.

The detector runs on ``x_M`` and the *exact candidate* of the detection is
read there, through the adapter's
:meth:`~mmdet_odam.explainers.adapters.DetectorAdapter.candidate_scalars_on_inputs`:
for dense heads the same (level, index) anchor of the head's output, for
Faster R-CNN the same proposal RoI pooled from the masked image's features
(nothing is re-matched by IoU). Its score ``s_M`` (the detector's confidence
of the detected class) and box ``b_M`` (input pixels) give the loss
(:func:`bbam_loss`), per detection:

    L = l1_weight * mean(M)
        + box_weight * ((|dx1| + |dx2|) / w + (|dy1| + |dy2|) / h)
        + score_weight * |s_M - s|

where ``s``, ``b`` (width ``w``, height ``h``) are the candidate's score and
box on the unmasked image, ``d*`` the differences of ``b_M`` to ``b``, and
``mean(M)`` the L1 size of the upsampled mask divided by the image area (so
``l1_weight`` does not depend on the resolution). Adam (learning rate
``lr``) runs ``num_steps`` steps on the coarse masks, projected back onto
[0, 1] after each step.

Cost: all detections of an image are optimised together, ``chunk_size``
masked images per forward / backward. Nothing is random: the initial mask is
fixed (all ones), so a run repeats exactly (a different ``chunk_size`` only
changes the float rounding of the batched forward).

Output: the mask at the input resolution, resized bilinearly to the original
image, as each detection's map (a
:class:`~mmdet_odam.structures.HeatMaps`; like every map it is shown scaled by
its peak). BBAM explains the whole detection (box and class together), so
every requested target gets this same map, as with D-RISE. The model's
parameters get no ``.grad`` (gradients are taken with
``torch.autograd.grad`` w.r.t. the masks only) and its mode is not changed.
"""
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from torch import Tensor

from ..registry import EXPLAINERS
from ..structures import HeatMaps
from .adapters import DetectorAdapter, ForwardState, build_adapter
from .drise import pixel_affine
from .heatmap import gaussian_kernels_1d, kernel_radius
from .odam import TARGETS

PERTURBATIONS = ('blur', 'constant')


def upsample_masks(coarse: Tensor, size: Sequence[int]) -> Tensor:
    """Smooth masks on the image from coarse ones (bilinear upsampling).

    Args:
        coarse (Tensor): (N, 1, h, w) in [0, 1].
        size (Sequence[int]): (H, W) of the image.

    Returns:
        Tensor: (N, 1, H, W) in [0, 1].
    """
    return F.interpolate(coarse, size=tuple(int(s) for s in size),
                         mode='bilinear', align_corners=False)


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with replicate padding.

    Args:
        images (Tensor): (B, C, H, W).
        sigma (float): Standard deviation in pixels (0: no blur).

    Returns:
        Tensor: (B, C, H, W); a constant image stays constant.
    """
    radius = kernel_radius(float(sigma))
    if sigma <= 0 or radius == 0:
        return images
    kernel = gaussian_kernels_1d(images.new_tensor([float(sigma)]),
                                 radius)[0]
    channels = images.shape[1]
    x = F.pad(images, (radius, radius, radius, radius), mode='replicate')
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1),
                 groups=channels)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1),
                    groups=channels)


def blend(images: Tensor, perturbed: Tensor, masks: Tensor) -> Tensor:
    """``masks * images + (1 - masks) * perturbed``, computed so that a mask
    of 1 gives ``images`` exactly (the unmasked candidate's scalars exactly:
    a zero loss with a zero gradient, not float noise that Adam's
    normalised steps would follow).

    Args:
        images (Tensor): (1 or N, C, H, W).
        perturbed (Tensor): (1 or N, C, H, W), broadcastable to images.
        masks (Tensor): (N, 1, H, W) in [0, 1].

    Returns:
        Tensor: (N, C, H, W).
    """
    return images + (1 - masks) * (perturbed - images)


def bbam_loss(scalars: Tensor, reference: Tensor, masks: Tensor,
              l1_weight: float, box_weight: float,
              score_weight: float) -> Tensor:
    """BBAM's objective per detection (see the module docstring).

    Args:
        scalars (Tensor): The candidates on the masked images, (N, 5):
            score and outward extents (-x1, -y1, x2, y2) in input pixels, as
            the adapters' ``candidate_scalars``.
        reference (Tensor): The same on the unmasked image, (N, 5).
        masks (Tensor): Upsampled masks (N, 1, H, W).
        l1_weight (float): Weight of the mask's mean value.
        box_weight (float): Weight of the box's L1 change, in units of the
            reference box's width (x) and height (y).
        score_weight (float): Weight of the score's absolute change.

    Returns:
        Tensor: (N, ) losses.
    """
    # -x1 + x2 = width, -y1 + y2 = height
    width = (reference[:, 1] + reference[:, 3]).clamp(min=1.0)
    height = (reference[:, 2] + reference[:, 4]).clamp(min=1.0)
    delta = (scalars[:, 1:] - reference[:, 1:]).abs()
    box = (delta[:, 0] + delta[:, 2]) / width + \
        (delta[:, 1] + delta[:, 3]) / height
    score = (scalars[:, 0] - reference[:, 0]).abs()
    size = masks.flatten(1).mean(dim=1)
    return l1_weight * size + box_weight * box + score_weight * score


def _mask_grid(mask_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """``mask_size`` as (h, w) cells, checked."""
    sizes = (mask_size, mask_size) if isinstance(mask_size, int) else \
        tuple(mask_size)
    if len(sizes) != 2 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1
            for s in sizes):
        raise ValueError('mask_size must be an integer >= 1 or a pair of '
                         f'them, got {mask_size!r}')
    return sizes


def _check_number(name: str, value, minimum: float, integer: bool = False,
                  strict: bool = False) -> None:
    """One-line ValueError unless ``value`` is a number >= (or >) minimum."""
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool) and \
        (value > minimum if strict else value >= minimum) and \
        value == value and value != float('inf')
    if not ok:
        what = 'an integer' if integer else 'a finite number'
        raise ValueError(f'{name} must be {what} {">" if strict else ">="} '
                         f'{minimum}, got {value!r}')


@EXPLAINERS.register_module()
class BBAM:
    """BBAM explainer (see the module docstring for every choice).

    Args:
        num_steps (int): Adam steps per mask.
        mask_size (int | tuple): Coarse mask cells (h, w); an int for both.
        lr (float): Adam learning rate (mask values are in [0, 1]).
        l1_weight (float): Weight of the mask size (mean mask value).
        box_weight (float): Weight of the box change (relative L1).
        score_weight (float): Weight of the score change (L1).
        perturbation (str): ``'blur'`` or ``'constant'``.
        blur_sigma (float): Gaussian sigma in input pixels (``'blur'``).
        constant_value (float): Pixel value, before normalisation
            (``'constant'``).
        chunk_size (int): Masked images per forward / backward.
    """

    # the adapter BBAM reads candidates with (tools check the family)
    feature = 'neck'
    score_target = 'score'

    def __init__(self, num_steps: int = 300,
                 mask_size: Union[int, Sequence[int]] = 16, lr: float = 0.1,
                 l1_weight: float = 1.0, box_weight: float = 2.0,
                 score_weight: float = 2.0, perturbation: str = 'blur',
                 blur_sigma: float = 10.0, constant_value: float = 0.0,
                 chunk_size: int = 16) -> None:
        _check_number('num_steps', num_steps, 0, integer=True)
        self.mask_size = _mask_grid(mask_size)
        _check_number('lr', lr, 0, strict=True)
        for name, value in (('l1_weight', l1_weight),
                            ('box_weight', box_weight),
                            ('score_weight', score_weight),
                            ('blur_sigma', blur_sigma)):
            _check_number(name, value, 0)
        if perturbation not in PERTURBATIONS:
            raise ValueError(f'perturbation must be one of {PERTURBATIONS}, '
                             f'got {perturbation!r}')
        _check_number('constant_value', constant_value, float('-inf'))
        _check_number('chunk_size', chunk_size, 1, integer=True)
        self.num_steps = num_steps
        self.lr = float(lr)
        self.l1_weight = float(l1_weight)
        self.box_weight = float(box_weight)
        self.score_weight = float(score_weight)
        self.perturbation = perturbation
        self.blur_sigma = float(blur_sigma)
        self.constant_value = float(constant_value)
        self.chunk_size = chunk_size

    # ------------------------------------------------------------------
    def explain_batch(self, model, inputs: Tensor,
                      data_samples: List[DetDataSample],
                      targets: Sequence[str] = ('score', ),
                      score_thr: float = 0.3) -> List[DetDataSample]:
        """Explain every detection of a preprocessed batch.

        Args:
            model: MMDetection detector (eval mode).
            inputs (Tensor): Preprocessed images (B, 3, H, W).
            data_samples (list[DetDataSample]): With image metainfo.
            targets (Sequence[str]): Names of the output maps (from
                ``TARGETS``); all get the same BBAM mask.
            score_thr (float): Detections scoring below it are dropped.

        Returns:
            list[DetDataSample]: ``pred_instances`` with ``bboxes``,
            ``scores``, ``labels`` and ``heatmaps`` (``HeatMaps``, N x T
            on the original image); ``metainfo['targets']``.
        """
        targets = tuple(targets)
        unknown = [t for t in targets if t not in TARGETS]
        if unknown or not targets:
            raise ValueError(f'unknown targets {unknown}; choose from '
                             f'{TARGETS}')
        adapter = build_adapter(model)
        if type(adapter).candidate_scalars_on_inputs is \
                DetectorAdapter.candidate_scalars_on_inputs:
            raise TypeError(f'BBAM does not support {type(model).__name__} '
                            '(dense heads and two-stage detectors)')
        with torch.no_grad():
            state = adapter.forward(inputs, data_samples, keep_graph=False)
        outputs = []
        for img_idx, sample in enumerate(data_samples):
            res = state.results[img_idx]
            keep = (res.scores >= score_thr).nonzero()[:, 0]
            masks = self.optimise_masks(adapter, state, inputs, img_idx,
                                        sample.metainfo, keep.tolist())[0]
            outputs.append(self._pack(sample, res[keep], masks, targets))
        return outputs

    # ------------------------------------------------------------------
    def perturbed_image(self, model, image: Tensor) -> Tensor:
        """The image where the mask is off, (1, C, h, w) from (1, C, h, w)
        preprocessed (normalised) pixels."""
        if self.perturbation == 'blur':
            return gaussian_blur(image, self.blur_sigma)
        mean, std = pixel_affine(model, image)
        return ((self.constant_value - mean) / std)[None].expand_as(image)

    def optimise_masks(self, adapter, state: ForwardState, inputs: Tensor,
                       img_idx: int, meta: dict, det_ids: Sequence[int]
                       ) -> Tuple[Tensor, Tensor, Tensor]:
        """BBAM masks of detections ``det_ids`` of one image.

        Args:
            adapter: The model's adapter (``build_adapter``).
            state (ForwardState): Its forward on ``inputs``.
            inputs (Tensor): Preprocessed batch (B, C, H_pad, W_pad).
            img_idx (int): The image.
            meta (dict): Its metainfo (``img_shape``).
            det_ids (Sequence[int]): Detections of ``state.results[img_idx]``.

        Returns:
            tuple[Tensor, Tensor, Tensor]: Masks on the unpadded input
            (D, h_img, w_img); the candidates' scalars (D, 5) on the unmasked
            image (the targets) and on the final masked images.
        """
        det_ids = list(det_ids)
        height, width = (int(v) for v in meta['img_shape'][:2])
        image = inputs[img_idx:img_idx + 1].detach()
        region = image[:, :, :height, :width]
        with torch.no_grad():
            perturbed = self.perturbed_image(adapter.model, region)
        masks, refs, finals = [], [], []
        for start in range(0, len(det_ids), self.chunk_size):
            ids = det_ids[start:start + self.chunk_size]
            coarse = image.new_ones((len(ids), 1, *self.mask_size),
                                    requires_grad=True)
            optimiser = torch.optim.Adam([coarse], lr=self.lr)

            def masked_scalars() -> Tuple[Tensor, Tensor]:
                mask = upsample_masks(coarse, (height, width))
                batch = image.repeat(len(ids), 1, 1, 1)
                batch[:, :, :height, :width] = blend(region, perturbed, mask)
                return adapter.candidate_scalars_on_inputs(
                    batch, state, img_idx, ids), mask

            with torch.no_grad():  # all-on mask: the unmasked image
                ref = masked_scalars()[0]
            with torch.enable_grad():
                for _ in range(self.num_steps):
                    scalars, mask = masked_scalars()
                    loss = bbam_loss(scalars, ref, mask, self.l1_weight,
                                     self.box_weight, self.score_weight)
                    # w.r.t. the masks only: no .grad on the model
                    coarse.grad, = torch.autograd.grad(loss.sum(), coarse)
                    optimiser.step()
                    with torch.no_grad():
                        coarse.clamp_(0, 1)
            with torch.no_grad():
                scalars, mask = masked_scalars()
            masks.append(mask[:, 0].detach())
            refs.append(ref)
            finals.append(scalars.detach())
        if not det_ids:
            empty = image.new_zeros((0, 5))
            return image.new_zeros((0, height, width)), empty, empty
        return torch.cat(masks), torch.cat(refs), torch.cat(finals)

    def _pack(self, sample: DetDataSample, results, masks: Tensor,
              targets: tuple) -> DetDataSample:
        """The output sample: the masks resized to the original image."""
        meta = sample.metainfo
        ori_h, ori_w = (int(v) for v in meta['ori_shape'][:2])
        maps = masks[:, None]
        if len(maps) and tuple(maps.shape[-2:]) != (ori_h, ori_w):
            maps = F.interpolate(maps, size=(ori_h, ori_w), mode='bilinear',
                                 align_corners=False)
        elif not len(maps):
            maps = masks.new_zeros((0, 1, ori_h, ori_w))
        out = DetDataSample(metainfo=meta)
        out.set_metainfo(dict(targets=targets))
        pred = results.new()
        pred.bboxes = results.bboxes
        pred.scores = results.scores
        pred.labels = results.labels
        # one mask explains the detection; every target shows it
        pred.heatmaps = HeatMaps.from_dense(
            maps.expand(-1, len(targets), -1, -1).contiguous(), targets,
            img_shape=meta['img_shape'][:2])
        out.pred_instances = pred
        return out


__all__ = ['BBAM', 'upsample_masks', 'gaussian_blur', 'blend', 'bbam_loss']
