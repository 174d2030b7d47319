"""Odam-NMS in a detector, without patching MMDetection.

A detector built as ``type='OdamNMSDetector'`` (or passed to
:func:`enable_odam_nms`) gets, on its own head instance only, a thin
``predict`` (dense heads: FCOS, RetinaNet, ...) or ``predict_bbox`` (R-CNN)
that calls the class's method unchanged unless the head's test config has
an ``odam_nms`` entry; nothing changes for any other model of the process::

    model = dict(type='OdamNMSDetector', detector_type='FCOS',       # dense
                 test_cfg=dict(odam_nms=dict(type='OdamNMS')))
    model = dict(type='OdamNMSDetector', detector_type='FasterRCNN', # R-CNN
                 test_cfg=dict(rcnn=dict(odam_nms=dict(
                     type='OdamNMS', iou_threshold=0.6, t_high=0.7,
                     t_low=0.3))))

Heads that override the replaced method, and DETR-style detectors (no NMS),
are refused in one line when the detector is built.
"""
from mmdet.registry import MODELS

from .odam_nms import build_odam_nms


def _odam_cfg(test_cfg):
    if test_cfg is None or not hasattr(test_cfg, 'get'):
        return None
    return test_cfg.get('odam_nms', None)


def _odam_predict_dense(self, x, batch_data_samples, rescale: bool = False):
    """``predict`` of a dense head with Odam-NMS enabled (see
    :func:`enable_odam_nms`): Odam-NMS when its test config asks for it."""
    cfg = _odam_cfg(self.test_cfg)
    if cfg is None:
        return type(self).predict(self, x, batch_data_samples,
                                  rescale=rescale)
    return build_odam_nms(cfg).predict_dense(self, x, batch_data_samples,
                                             rescale)


def _odam_predict_bbox(self, x, batch_img_metas, rpn_results_list,
                       rcnn_test_cfg, rescale: bool = False):
    """``predict_bbox`` of an RoI head with Odam-NMS enabled."""
    cfg = _odam_cfg(rcnn_test_cfg)
    if cfg is None:
        return type(self).predict_bbox(self, x, batch_img_metas,
                                       rpn_results_list, rcnn_test_cfg,
                                       rescale=rescale)
    return build_odam_nms(cfg).predict_rcnn(
        self, x, batch_img_metas, rpn_results_list, rcnn_test_cfg, rescale)


def enable_odam_nms(model):
    """Let ``test_cfg.odam_nms`` take effect on this one detector.

    The detector's own head gets an instance-level ``predict`` (dense heads
    that keep ``BaseDenseHead.predict``) or ``predict_bbox`` (RoI heads that
    keep ``StandardRoIHead.predict_bbox``) that runs the class's method
    unchanged unless the test config has ``odam_nms``; no class and no other
    model changes. Idempotent.

    Returns:
        The same model.

    Raises:
        NotImplementedError: For detectors without NMS (DETR-style) or whose
            head overrides the method the integration replaces.
    """
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    from mmdet.models.detectors import DetectionTransformer
    from mmdet.models.roi_heads import StandardRoIHead
    name = type(model).__name__
    roi_head = getattr(model, 'roi_head', None)
    if isinstance(model, DetectionTransformer):
        raise NotImplementedError(
            f'Odam-NMS is not supported for {name}: DETR-style detectors '
            'have no NMS; remove test_cfg.odam_nms')
    if isinstance(roi_head, StandardRoIHead) and \
            type(roi_head).predict_bbox is StandardRoIHead.predict_bbox:
        roi_head.predict_bbox = _odam_predict_bbox.__get__(roi_head)
    elif isinstance(getattr(model, 'bbox_head', None), BaseDenseHead) and \
            roi_head is None and \
            type(model.bbox_head).predict is BaseDenseHead.predict:
        model.bbox_head.predict = _odam_predict_dense.__get__(
            model.bbox_head)
    else:
        head = roi_head if roi_head is not None else \
            getattr(model, 'bbox_head', None)
        raise NotImplementedError(
            f'Odam-NMS is not supported for {name} with '
            f'{type(head).__name__}: it replaces BaseDenseHead.predict or '
            'StandardRoIHead.predict_bbox, which this head does not use')
    return model


def check_odam_nms_config(model_cfg) -> None:
    """Refuse a detector config whose test config names ``odam_nms`` but
    that is not built as ``OdamNMSDetector`` (the entry would be ignored).

    Raises:
        ValueError: One line saying what to add.
    """
    test_cfg = model_cfg.get('test_cfg') or {}
    names = [key for key, part in (('test_cfg', test_cfg),
                                   ('test_cfg.rcnn', test_cfg.get('rcnn')))
             if _odam_cfg(part) is not None]
    if names and model_cfg.get('type') != 'OdamNMSDetector':
        raise ValueError(
            f'model.{names[0]}.odam_nms has no effect on a plain '
            f"{model_cfg.get('type')}: build it with model.type="
            f"'OdamNMSDetector', detector_type='{model_cfg.get('type')}'")


@MODELS.register_module()
def OdamNMSDetector(detector_type: str, **kwargs):  # noqa: N802 (a type)
    """Config entry building a detector with Odam-NMS enabled::

        model = dict(type='OdamNMSDetector', detector_type='FCOS',
                     test_cfg=dict(odam_nms=dict(type='OdamNMS')))

    The rest of ``model`` is the ``detector_type``'s own arguments (inherit
    them from its config), so checkpoints of the plain detector load as they
    are (same module tree and state dict keys).
    """
    return enable_odam_nms(MODELS.build(dict(type=detector_type, **kwargs)))
