from .heatmaps import HeatMaps, MapWindows

__all__ = ['HeatMaps', 'MapWindows']
