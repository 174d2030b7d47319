"""Model-side components: batched candidate maps, Odam-Train, Odam-NMS."""
from .candidate_maps import CandidateMapper, common_grid_size, resample_to_grid
from .odam_train import (OdamTrainLoss, install_odam_train, odam_pair_losses,
                         odam_train_losses)
# the function odam_nms stays in .odam_nms: re-exporting it here would hide
# the submodule mmdet_odam.models.odam_nms
from .odam_nms import (OdamNMS, batched_odam_nms, install_odam_nms,
                       map_correlation, uninstall_odam_nms)

from .tf_ssd import TFMobileNetV2, TFSSDAnchorGenerator, TFSSDHead

install_odam_nms()

__all__ = [
    'CandidateMapper', 'common_grid_size', 'resample_to_grid',
    'OdamTrainLoss', 'install_odam_train', 'odam_pair_losses',
    'odam_train_losses',
    'OdamNMS', 'batched_odam_nms', 'install_odam_nms', 'map_correlation',
    'uninstall_odam_nms', 'TFMobileNetV2', 'TFSSDAnchorGenerator', 'TFSSDHead'
]
