from .adapters import ATTRIBUTES, build_adapter
from .bbam import BBAM
from .cameras import CAMERAS
from .candidates import (CandidateSelector, FinalDetections,
                         MatchedCandidates, OtherClasses,
                         SuppressedCandidates)
from .drise import DRISE
from .gradcam import GradCAM, GradCAMPlusPlus
from .heatmap import (adaptive_sigmas, feature_to_image, gaussian_smooth,
                      normalize_maps, odam_map, smooth_gradients,
                      weighted_activation_map)
from .odam import ODAM, TARGETS

__all__ = ['ODAM', 'GradCAM', 'GradCAMPlusPlus', 'DRISE', 'CAMERAS', 'BBAM',
           'TARGETS', 'ATTRIBUTES', 'build_adapter', 'odam_map',
           'smooth_gradients', 'gaussian_smooth', 'weighted_activation_map',
           'adaptive_sigmas', 'normalize_maps', 'feature_to_image',
           'CandidateSelector', 'FinalDetections', 'SuppressedCandidates',
           'MatchedCandidates', 'OtherClasses']
