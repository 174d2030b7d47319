from .heatmap_overlay import (add_colorbar, check_colormap, colorize_heatmap,
                              draw_box, encode_rgb_png, fit_tile,
                              make_gallery, overlay_heatmap, save_rgb_png,
                              show_cam_on_image)

__all__ = ['check_colormap', 'colorize_heatmap', 'overlay_heatmap',
           'make_gallery', 'fit_tile', 'draw_box', 'encode_rgb_png',
           'save_rgb_png', 'add_colorbar', 'show_cam_on_image']
from .det_visualizer import HeatMapVisualizer  # noqa: E402 (registers it)

__all__ += ['HeatMapVisualizer']
