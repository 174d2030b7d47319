"""High-level API mirroring ``mmdet.apis.inference_detector``.

:func:`explain` leaves the model as it found it: its config, its train / eval
mode and its parameters (gradients are taken with ``torch.autograd.grad`` on
detached features, so no ``.grad`` is written).
"""
import copy
import inspect
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.registry import DefaultScope
from mmdet.structures import DetDataSample
from mmdet.utils import get_test_pipeline_cfg

from ..explainers import TARGETS
from ..explainers.candidates import as_selectors
from ..registry import EXPLAINERS

ImageType = Union[str, os.PathLike, np.ndarray]


def build_explainer(explainer: Union[dict, str, object, None]):
    """Build an explainer: ``dict(type='ODAM', ...)``, a registered name
    (``'ODAM'``), an already built explainer, or None (default ODAM).

    Raises:
        ValueError: Unknown explainer name.
        TypeError: Anything else.
    """
    if explainer is None:
        explainer = dict(type='ODAM')
    if isinstance(explainer, str):
        explainer = dict(type=explainer)
    if isinstance(explainer, dict):
        name = explainer.get('type')
        if isinstance(name, str) and EXPLAINERS.get(name) is None:
            # the registry's own KeyError names no alternatives
            known = ', '.join(sorted(EXPLAINERS.module_dict))
            raise ValueError(f'unknown explainer {name!r}; registered: '
                             f'{known}')
        # explainers live in our own registry tree, not under the 'mmdet'
        # default scope that init_detector sets
        with DefaultScope.overwrite_default_scope('mmdet_odam'):
            return EXPLAINERS.build(explainer)
    if not callable(getattr(explainer, 'explain_batch', None)):
        raise TypeError('explainer must be a config dict, a registered name '
                        'or an object with explain_batch(), got '
                        f'{type(explainer).__name__}')
    return explainer


def as_bgr_image(img: ImageType) -> Union[str, np.ndarray]:
    """Check one image input: a path (``str`` / ``PathLike``) of an existing
    file, returned as ``str``, or an array returned as (H, W, 3) BGR
    ((H, W) grayscale is repeated, a 4th alpha channel dropped).

    Raises:
        FileNotFoundError: Missing file.
        ValueError: Empty or wrongly shaped array.
        TypeError: Any other type (e.g. a torch tensor) or a non-numeric
            array.
    """
    if isinstance(img, (str, os.PathLike)):
        path = os.fspath(img)
        if not osp.isfile(path):
            raise FileNotFoundError(f'image not found: {path}')
        return path
    if isinstance(img, torch.Tensor):
        raise TypeError('images are paths or (H, W, 3) BGR numpy arrays, got '
                        'a torch.Tensor (pass tensor.permute(1, 2, 0).cpu()'
                        '.numpy() for a CHW tensor)')
    if not isinstance(img, np.ndarray):
        raise TypeError('images are paths or (H, W, 3) BGR numpy arrays, got '
                        f'{type(img).__name__}')
    if img.dtype == bool or not np.issubdtype(img.dtype, np.number):
        raise TypeError(f'image array has dtype {img.dtype}; expected uint8 '
                        'or float')
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError('image array must be (H, W), (H, W, 3) or '
                         f'(H, W, 4), got shape {img.shape}')
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f'image array is empty (shape {img.shape})')
    return np.ascontiguousarray(img)


def as_targets(targets: Union[str, Sequence[str]]) -> tuple:
    """``targets`` as a tuple of known names (a single name may be a str).

    Raises:
        ValueError: Empty, or a name outside :data:`TARGETS`.
    """
    if isinstance(targets, str):
        targets = (targets, )
    targets = tuple(targets)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise ValueError(f'unknown targets {unknown or "(none given)"}; '
                         f'choose from {TARGETS}')
    return targets


def build_test_pipeline(model, first_image: ImageType) -> Compose:
    """The model config's test pipeline, reading arrays when given arrays.

    The config is deep-copied: the model's own ``cfg`` is never changed.
    """
    pipeline = copy.deepcopy(get_test_pipeline_cfg(model.cfg))
    if isinstance(first_image, np.ndarray):
        pipeline[0].type = 'mmdet.LoadImageFromNDArray'
    return Compose(pipeline)


def preprocess(model, img: Union[str, np.ndarray],
               pipeline: Optional[Compose] = None
               ) -> Tuple[torch.Tensor, List[DetDataSample]]:
    """One image through the test pipeline and the model's data
    preprocessor, as inference does.

    Args:
        model: The detector.
        img (str | ndarray): A path or a BGR array (see :func:`as_bgr_image`).
        pipeline (Compose, optional): Default: the config's test pipeline
            for this kind of input.

    Returns:
        tuple: ``inputs`` (1, 3, H, W) and ``[data_sample]``.
    """
    is_array = isinstance(img, np.ndarray)
    if pipeline is None:
        pipeline = build_test_pipeline(model, img)
    data = pipeline(dict(img=img, img_id=0) if is_array else
                    dict(img_path=img, img_id=0))
    batch = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
        False)
    return batch['inputs'], batch['data_samples']


def explain(model,
            imgs: Union[ImageType, Sequence[ImageType]],
            explainer: Union[dict, str, object, None] = None,
            targets: Union[str, Sequence[str]] = TARGETS,
            score_thr: float = 0.3,
            test_pipeline: Optional[Compose] = None,
            candidates=None
            ) -> Union[DetDataSample, List[DetDataSample]]:
    """Detect and explain every detection of one or several images.

    Args:
        model: A detector from :func:`mmdet_odam.apis.init_explained_detector`
            or ``mmdet.apis.init_detector`` (with ``cfg``). Its config, mode
            and parameters are left unchanged.
        imgs (str | PathLike | ndarray | Sequence): Image path(s) or BGR
            array(s) ((H, W, 3); (H, W) grayscale and (H, W, 4) BGRA are
            accepted), mixed in a list as you like.
        explainer (dict | str | object): ``dict(type='ODAM', ...)``, a
            registered name or a built explainer from
            ``mmdet_odam.registry.EXPLAINERS``.
        targets (str | Sequence[str]): Maps to return, in order, from
            ``('score', 'x1', 'y1', 'x2', 'y2', 'combined')``.
        score_thr (float): Detections scoring below it are not returned.
        test_pipeline (Compose, optional): Overrides the config's pipeline
            (for every image, so all must be of the kind it loads).
        candidates (CandidateSelector | list, optional): Explain other
            candidates than the final detections: NMS-suppressed ones, the
            best match of a given box and class, other classes of a
            detection (:mod:`mmdet_odam.explainers.candidates`); one selector
            for every image or one per image. Explainers built on ODAM
            (ODAM, Grad-CAM, Grad-CAM++) take it.

    Returns:
        DetDataSample | list[DetDataSample]: Per image, ``pred_instances`` with
        the model's final ``bboxes``/``scores``/``labels`` (original image
        pixels; with ``candidates``, the selected candidates' with
        ``ref_index``/``ref_iou``), their candidate identity (``cand_*``)
        and ``heatmaps`` (:class:`~mmdet_odam.structures.HeatMaps`:
        N x T maps in [0, 1], rendered on demand); ``metainfo['targets']``
        names the T maps. No detection above ``score_thr`` gives N = 0.

    Raises:
        FileNotFoundError, ValueError, TypeError: Bad images, targets or
            explainer, before the model runs.
    """
    is_batch = isinstance(imgs, (list, tuple))
    images = [as_bgr_image(img) for img in (imgs if is_batch else [imgs])]
    if not images:
        return []
    targets = as_targets(targets)
    explainer = build_explainer(explainer)
    extra = {}
    if candidates is not None:
        if 'candidates' not in inspect.signature(
                explainer.explain_batch).parameters:
            raise TypeError(f'{type(explainer).__name__} explains final '
                            'detections only; use ODAM, GradCAM or '
                            'GradCAMPlusPlus with candidates=')
        as_selectors(candidates, len(images))  # type check before the model
        extra['candidates'] = candidates if not isinstance(
            candidates, (list, tuple)) else None
    pipelines: Dict[bool, Compose] = {}  # by "is an array"
    was_training = model.training
    model.eval()
    outputs = []
    try:
        for number, img in enumerate(images):
            if isinstance(candidates, (list, tuple)):
                extra['candidates'] = candidates[number]
            is_array = isinstance(img, np.ndarray)
            if test_pipeline is not None:
                pipeline = test_pipeline
            else:
                if is_array not in pipelines:
                    pipelines[is_array] = build_test_pipeline(model, img)
                pipeline = pipelines[is_array]
            inputs, data_samples = preprocess(model, img, pipeline)
            outputs.extend(explainer.explain_batch(
                model, inputs, data_samples, targets=targets,
                score_thr=score_thr, **extra))
    finally:
        model.train(was_training)
    return outputs if is_batch else outputs[0]
