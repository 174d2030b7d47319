"""High-level API mirroring ``mmdet.apis.inference_detector``."""
import os.path as osp
from typing import Optional, Sequence, Union

import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.registry import DefaultScope
from mmdet.structures import DetDataSample
from mmdet.utils import get_test_pipeline_cfg

from ..explainers import TARGETS
from ..registry import EXPLAINERS

ImageType = Union[str, np.ndarray]


def build_explainer(explainer: Union[dict, object, None]):
    """Build an explainer from a config dict (``dict(type='ODAM', ...)``)."""
    if explainer is None:
        explainer = dict(type='ODAM')
    if isinstance(explainer, dict):
        # explainers live in our own registry tree, not under the 'mmdet'
        # default scope that init_detector sets
        with DefaultScope.overwrite_default_scope('mmdet_odam'):
            return EXPLAINERS.build(explainer)
    return explainer


def build_test_pipeline(model, first_image: ImageType) -> Compose:
    """The model config's test pipeline, reading arrays when given arrays."""
    pipeline = get_test_pipeline_cfg(model.cfg.copy())
    if isinstance(first_image, np.ndarray):
        pipeline[0].type = 'mmdet.LoadImageFromNDArray'
    return Compose(pipeline)


def explain(model,
            imgs: Union[ImageType, Sequence[ImageType]],
            explainer: Union[dict, object, None] = None,
            targets: Sequence[str] = TARGETS,
            score_thr: float = 0.3,
            test_pipeline: Optional[Compose] = None
            ) -> Union[DetDataSample, list]:
    """Detect and explain every detection of one or several images.

    Args:
        model: A detector from ``mmdet.apis.init_detector`` (with ``cfg``).
        imgs (str | ndarray | Sequence): Image path(s) or BGR array(s).
        explainer (dict | object): ``dict(type='ODAM', ...)`` or a built
            explainer from ``mmdet_odam.registry.EXPLAINERS``.
        targets (Sequence[str]): Maps to return, in order, from
            ``('score', 'x1', 'y1', 'x2', 'y2', 'combined')``.
        score_thr (float): Detections scoring below it are not returned.
        test_pipeline (Compose, optional): Overrides the config's pipeline.

    Returns:
        DetDataSample | list[DetDataSample]: Per image, ``pred_instances`` with
        the model's final ``bboxes``/``scores``/``labels`` (original image
        pixels) and ``heatmaps`` (N, T, H, W) in [0, 1]; ``metainfo['targets']``
        names the T maps. No detection above ``score_thr`` gives N = 0.
    """
    is_batch = isinstance(imgs, (list, tuple))
    images = list(imgs) if is_batch else [imgs]
    if not images:
        return []
    for img in images:
        if isinstance(img, str) and not osp.isfile(img):
            raise FileNotFoundError(f'image not found: {img}')
    explainer = build_explainer(explainer)
    if test_pipeline is None:
        test_pipeline = build_test_pipeline(model, images[0])
    model.eval()
    outputs = []
    for img in images:
        data = dict(img=img, img_id=0) if isinstance(img, np.ndarray) else \
            dict(img_path=img, img_id=0)
        data = test_pipeline(data)
        batch = model.data_preprocessor(
            dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
            False)
        outputs.extend(explainer.explain_batch(
            model, batch['inputs'], batch['data_samples'], targets=targets,
            score_thr=score_thr))
    return outputs if is_batch else outputs[0]
