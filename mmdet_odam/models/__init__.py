"""Model-side components: batched candidate maps, Odam-Train, Odam-NMS."""
from .candidate_maps import CandidateMapper, common_grid_size, resample_to_grid
from .odam_train import (OdamTrainLoss, install_odam_train, odam_pair_losses,
                         odam_train_losses)
# the function odam_nms stays in .odam_nms: re-exporting it here would hide
# the submodule mmdet_odam.models.odam_nms
from .odam_nms import OdamNMS, batched_odam_nms, map_correlation
from .odam_nms_detector import (OdamNMSDetector, check_odam_nms_config,
                                enable_odam_nms)
from .tf_ssd import TFMobileNetV2, TFSSDAnchorGenerator, TFSSDHead

__all__ = [
    'CandidateMapper', 'common_grid_size', 'resample_to_grid',
    'OdamTrainLoss', 'install_odam_train', 'odam_pair_losses',
    'odam_train_losses',
    'OdamNMS', 'OdamNMSDetector', 'batched_odam_nms', 'enable_odam_nms',
    'check_odam_nms_config',
    'map_correlation', 'TFMobileNetV2', 'TFSSDAnchorGenerator', 'TFSSDHead'
]
