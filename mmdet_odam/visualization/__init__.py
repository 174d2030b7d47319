from .heatmap_overlay import (colorize_heatmap, draw_box, make_gallery,
                              overlay_heatmap, save_rgb_png)

__all__ = ['colorize_heatmap', 'overlay_heatmap', 'make_gallery', 'draw_box',
           'save_rgb_png']
