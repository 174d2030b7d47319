from .heatmap_overlay import (check_colormap, colorize_heatmap, draw_box,
                              encode_rgb_png, fit_tile, make_gallery,
                              overlay_heatmap, save_rgb_png)

__all__ = ['check_colormap', 'colorize_heatmap', 'overlay_heatmap',
           'make_gallery', 'fit_tile', 'draw_box', 'encode_rgb_png',
           'save_rgb_png']
