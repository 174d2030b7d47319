"""MMEngine's ``Runner`` with checkpoint loading that runs no code from the
file and, when asked, refuses weights that do not fit the model."""
from typing import Callable, Union

from torch import nn

from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import (_load_checkpoint,
                                        _load_checkpoint_to_model)

from mmdet.registry import RUNNERS

from ..utils.checkpoint import (check_state_dict, checkpoint_state_dict,
                                is_trusted, load_checkpoint_file)


def checkpoint_module(model: nn.Module) -> nn.Module:
    """The module a detector checkpoint's weights are for: the detector
    inside a test-time-augmentation wrapper (``.module``) or a wrapper that
    names it (``.checkpoint_module``, e.g. ``ExplainedDetector``)."""
    if isinstance(model, BaseTTAModel):
        return model.module
    return getattr(model, 'checkpoint_module', model)


@RUNNERS.register_module()
class SafeCheckpointRunner(Runner):
    """``Runner`` whose ``load_from`` / ``resume`` load local files with
    :func:`mmdet_odam.utils.load_checkpoint_file` (torch's ``weights_only``
    plus the types MMEngine checkpoints hold), so Runner-written checkpoints
    resume while a file that would run code is refused.

    Set with ``runner_type = 'SafeCheckpointRunner'`` (every config of this
    project does). Two config keys of its own:

    * ``trusted_checkpoints`` (list[str]): files loaded with full unpickling
      (only for files you trust);
    * ``strict_load`` (bool, default False as in MMEngine): refuse a
      ``load_from`` checkpoint with missing, unexpected or wrongly shaped
      weights (:class:`~mmdet_odam.utils.CheckpointMismatchError`).

    Remote files (``http://``, ``open-mmlab://`` ...) go through MMEngine's
    own loaders.
    """

    def load_checkpoint(self,
                        filename: str,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]):
        """As :meth:`mmengine.runner.Runner.load_checkpoint`, with the
        checkpoint file read by :func:`load_checkpoint_file`."""
        if '://' in filename:
            checkpoint = _load_checkpoint(filename, map_location=map_location)
        else:
            trusted = is_trusted(filename,
                                 self.cfg.get('trusted_checkpoints', ()) or ())
            checkpoint = load_checkpoint_file(filename, map_location,
                                              trusted=trusted)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else \
            self.model
        if self.cfg.get('strict_load', False):
            check_state_dict(checkpoint_module(model),
                             checkpoint_state_dict(checkpoint), filename)
        checkpoint = _load_checkpoint_to_model(
            model, checkpoint, strict, revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint


def build_runner(cfg) -> Runner:
    """The runner ``cfg.runner_type`` names, else a
    :class:`SafeCheckpointRunner` (instead of MMEngine's plain ``Runner``)."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return SafeCheckpointRunner.from_cfg(cfg)
