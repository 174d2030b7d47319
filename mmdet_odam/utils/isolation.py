"""Change how one explanation runs a module without changing the module.

Explaining a detection needs to observe or alter a head's forward (record
candidate indices, GroupNorm statistics, run convs without padding). Doing
that on the model itself, or on a function of MMDetection's modules, would be
seen by every other thread using that model or that function. These helpers
give the explainer private objects to alter instead.
"""
import copy
import types
from typing import Any, Callable

from torch import nn


def shared_weights_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module``'s object tree that shares its parameters and
    buffers (no tensor memory is copied).

    Attributes, hooks and ``forward`` overrides set on the copy or its
    sub-modules are invisible to the original, while the computation (and the
    gradient w.r.t. the parameters) is the original's.
    """
    memo = {id(t): t for t in module.parameters()}
    memo.update({id(t): t for t in module.buffers()})
    return copy.deepcopy(module, memo)


def with_globals(func: Callable, **replacements: Any) -> Callable:
    """A copy of ``func`` in which the global names in ``replacements``
    resolve to the given objects; the module and all other callers keep the
    originals.

    Raises:
        ValueError: If ``func`` does not refer to one of the names (it was
            overridden by code that works differently).
    """
    unused = [name for name in replacements
              if name not in func.__code__.co_names]
    if unused:
        raise ValueError(f'{func.__qualname__} does not call '
                         f'{", ".join(unused)}')
    namespace = dict(func.__globals__, **replacements)
    clone = types.FunctionType(func.__code__, namespace, func.__name__,
                               func.__defaults__, func.__closure__)
    clone.__kwdefaults__ = func.__kwdefaults__
    clone.__dict__.update(func.__dict__)
    clone.__qualname__ = func.__qualname__
    return clone


def bound_with_globals(obj: Any, name: str, **replacements: Any) -> Callable:
    """``obj``'s class method ``name``, bound to ``obj``, with the global
    names in ``replacements`` resolving to the given objects
    (:func:`with_globals`); set it as an attribute of a private ``obj``.

    Raises:
        TypeError: If that method does not use the names (the class
            overrides it with code that works differently).
    """
    cls = type(obj)
    try:
        method = with_globals(getattr(cls, name), **replacements)
    except ValueError:
        raise TypeError(f'{cls.__name__} overrides {name}; candidate '
                        'tracking is not supported for it') from None
    return types.MethodType(method, obj)
