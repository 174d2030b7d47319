from .checkpoint import (CheckpointMismatchError, UnsafeCheckpointError,
                         check_state_dict, checkpoint_state_dict,
                         compare_state_dicts, is_trusted,
                         load_checkpoint_checked, load_checkpoint_file,
                         mmengine_checkpoint_globals)

__all__ = [
    'CheckpointMismatchError', 'UnsafeCheckpointError', 'check_state_dict',
    'checkpoint_state_dict', 'compare_state_dicts', 'is_trusted',
    'load_checkpoint_checked', 'load_checkpoint_file',
    'mmengine_checkpoint_globals'
]
