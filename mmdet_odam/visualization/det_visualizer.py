"""An MMDetection visualizer that also draws ODAM heat maps.

:class:`HeatMapVisualizer` is MMDetection's ``DetLocalVisualizer`` with one
override: ``add_datasample`` first blends the heat maps of the sample's
``pred_instances.heatmaps`` (from :func:`mmdet_odam.apis.explain`) over the
image and appends a legend band (map name, colour bar), then lets
``DetLocalVisualizer`` draw boxes and labels as usual. So everything that
receives mmdet's drawings, ``vis_backends`` (``LocalVisBackend``,
``TensorboardVisBackend``, ``WandbVisBackend``), ``out_file`` and ``show``,
receives the heat maps too::

    visualizer = VISUALIZERS.build(dict(
        type='HeatMapVisualizer', target='combined',
        vis_backends=[dict(type='LocalVisBackend')], save_dir='vis'))
    visualizer.dataset_meta = model.dataset_meta
    visualizer.add_datasample('crowd', rgb_image, explained_sample)

With ``draw_gt`` and ``draw_pred`` both on, mmdet puts a GT panel and a
prediction panel side by side; both show the maps.
"""
from typing import Optional

import numpy as np
from mmdet.registry import VISUALIZERS
from mmdet.visualization import DetLocalVisualizer

from .heatmap_overlay import add_colorbar, check_colormap, show_cam_on_image


@VISUALIZERS.register_module()
class HeatMapVisualizer(DetLocalVisualizer):
    """``DetLocalVisualizer`` drawing ODAM heat maps under the boxes.

    Args:
        name (str): The instance's name (MMEngine's ``ManagerMixin``).
        target (str): Which explained map to draw (``'score'``, ``'x1'``...
            ``'combined'``); when the sample lacks it, its first map.
        detection (int, optional): Draw only this detection's map; default:
            the pixel-wise maximum over the detections scoring at least
            ``pred_score_thr``.
        image_weight (float): Weight of the image in the blend, [0, 1].
        cmap (str): matplotlib colormap.
        **kwargs: ``DetLocalVisualizer``'s arguments (``vis_backends``,
            ``save_dir``, ``line_width``...).
    """

    def __init__(self, name: str = 'visualizer', target: str = 'combined',
                 detection: Optional[int] = None, image_weight: float = 0.5,
                 cmap: str = 'jet', **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        if not 0. <= float(image_weight) <= 1.:
            raise ValueError(f'image_weight must be in [0, 1], got '
                             f'{image_weight}')
        self.target = target
        self.detection = detection
        self.image_weight = float(image_weight)
        self.cmap = check_colormap(cmap)

    def heat_map(self, data_sample, pred_score_thr: float
                 ) -> Optional[tuple]:
        """(the (H, W) map to draw, its legend title), or None when the
        sample has no heat maps or no detection passes the threshold."""
        pred = getattr(data_sample, 'pred_instances', None)
        if pred is None or 'heatmaps' not in pred or len(pred) == 0:
            return None
        heatmaps = pred.heatmaps
        targets = list(data_sample.metainfo.get('targets', ()) or
                       getattr(heatmaps, 'targets', ()))
        target = self.target if self.target in targets else targets[0]
        slot = targets.index(target)
        if self.detection is not None:
            det_ids = [int(self.detection)]
            title = f'{target} map of detection #{self.detection}'
        else:
            scores = pred.scores.detach().cpu().numpy()
            det_ids = np.nonzero(scores >= pred_score_thr)[0].tolist()
            title = f'{target} map (max over {len(det_ids)} detections)'
        if not det_ids:
            return None
        if hasattr(heatmaps, 'render'):
            maps = heatmaps.render(det_ids, targets=[target])[:, 0]
        else:  # a dense (N, T, H, W) tensor
            maps = heatmaps[det_ids, slot]
        return maps.amax(0).detach().cpu().numpy(), title

    def add_datasample(self, name: str, image: np.ndarray,
                       data_sample=None, draw_gt: bool = True,
                       draw_pred: bool = True, show: bool = False,
                       wait_time: float = 0, out_file: Optional[str] = None,
                       pred_score_thr: float = 0.3, step: int = 0) -> None:
        """As ``DetLocalVisualizer.add_datasample`` (``image`` RGB), with the
        sample's heat map blended over ``image`` and a legend band below."""
        found = None if data_sample is None or not draw_pred else \
            self.heat_map(data_sample, pred_score_thr)
        if found is not None:
            heat, title = found
            if heat.shape != image.shape[:2]:
                raise ValueError(f'heat maps are {heat.shape[0]}x'
                                 f'{heat.shape[1]}, the image '
                                 f'{image.shape[0]}x{image.shape[1]}: pass '
                                 'the original image')
            blended = show_cam_on_image(image, heat, self.image_weight,
                                        self.cmap, colorbar=False)
            image = add_colorbar(blended, self.cmap, title)
        super().add_datasample(name, image, data_sample, draw_gt, draw_pred,
                               show, wait_time, out_file, pred_score_thr,
                               step)


__all__ = ['HeatMapVisualizer']
