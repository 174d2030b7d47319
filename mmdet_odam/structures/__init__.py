from .heatmaps import HeatMaps, MapWindows, dense_heatmaps

__all__ = ['HeatMaps', 'MapWindows', 'dense_heatmaps']
