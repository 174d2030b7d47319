from .odam_train_hook import OdamTrainHook

__all__ = ['OdamTrainHook']
