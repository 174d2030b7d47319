from .odam_train_hook import OdamTrainHook
from .runner import SafeCheckpointRunner, build_runner

__all__ = ['OdamTrainHook', 'SafeCheckpointRunner', 'build_runner']
