"""The Odam-Train loss hook: switches Odam-Train on by config inheritance.

::

    _base_ = './fcos_tiny_synthetic-crowd.py'
    custom_hooks = [dict(type='OdamTrainHook', loss_weight=0.5)]

A hook cannot add a term to the loss dict by itself (losses come from the
model's ``loss``), so before training it makes the (unwrapped) detector's
``loss`` add ``loss_odam_con`` and ``loss_odam_sep`` to MMDetection's own
losses; MMEngine then sums, logs and backpropagates them like any other loss.
Works with distributed wrappers (the hook unwraps ``runner.model``) and AMP
(the pair losses are computed in float32).
"""
from typing import Optional

from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..models.odam_train import OdamTrainLoss, install_odam_train


@HOOKS.register_module()
class OdamTrainHook(Hook):
    """Add Odam-Train's consistency and separation losses to training.

    Args:
        warmup_iters (int): Iterations with the detection losses only (the
            Odam-Train terms are logged as 0), so that maps of a random
            detector are not pulled apart before it detects anything.
        **loss_cfg: Arguments of :class:`~mmdet_odam.models.OdamTrainLoss`
            (``loss_weight``, ``grid_short_edge``, ``max_positives``,
            ``negatives``, ``score_target``, ``smooth``, ``second_order``...).
    """

    priority = 'NORMAL'

    def __init__(self, warmup_iters: int = 0, **loss_cfg) -> None:
        self.warmup_iters = int(warmup_iters)
        self.loss = OdamTrainLoss(**loss_cfg)
        self._iter: Optional[int] = None

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        self._iter = runner.iter
        install_odam_train(model, self.loss,
                           active=lambda: self._iter >= self.warmup_iters)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self._iter = runner.iter
