"""Which adapter explains which detector: a registry keyed by head classes.

Adapters register the MMDetection head classes whose behaviour they follow
(:func:`register_adapter`). A detector is resolved by walking the method
resolution order of its *family part* (the RoI head of a two-stage detector,
else its ``bbox_head``): the most specific registered class wins, so one
adapter serves every subclass that keeps the code paths it hooks into, and a
subclass that overrides one of them (:attr:`DetectorAdapter.relies_on`) is
refused in one line naming what it overrides.
"""
from typing import Dict, Iterable, List, Optional, Type

from mmdet.models.detectors import TwoStageDetector

# head class -> adapter class, in registration order
_ADAPTERS: Dict[type, type] = {}


def register_adapter(*head_classes: type):
    """Class decorator: ``adapter`` explains detectors whose family part is
    one of ``head_classes`` or a subclass of one (see :func:`adapter_class`).
    """
    def register(adapter: type) -> type:
        for head_class in head_classes:
            if head_class in _ADAPTERS:
                raise KeyError(f'{head_class.__name__} already has the adapter '
                               f'{_ADAPTERS[head_class].__name__}')
            _ADAPTERS[head_class] = adapter
        return adapter

    return register


def registered_adapter(head_class: type) -> Optional[type]:
    """The adapter registered for exactly ``head_class``, or None."""
    return _ADAPTERS.get(head_class)


def family_part(model):
    """The module whose class decides a detector's family: the RoI head of a
    two-stage detector, else the ``bbox_head`` (None when there is none)."""
    if isinstance(model, TwoStageDetector):
        return getattr(model, 'roi_head', None)
    return getattr(model, 'bbox_head', None)


def overridden(obj, base: type, names: Iterable[str]) -> List[str]:
    """Which of ``base``'s methods ``names`` the class of ``obj`` overrides."""
    return [name for name in names
            if getattr(type(obj), name, None) is not getattr(base, name, None)]


def supported_families() -> List[str]:
    """One phrase per registered adapter (its ``family``), in order."""
    families = []
    for adapter in _ADAPTERS.values():
        if adapter.family not in families:
            families.append(adapter.family)
    return families


def adapter_class(model) -> Type:
    """The adapter class of a detector, by the MRO of :func:`family_part`.

    Raises:
        TypeError: One line naming the detector and its head, why it is not
            covered (which relied-on method it overrides, or no adapter at all)
            and the supported families.
    """
    part = family_part(model)
    reason = 'no adapter is registered for it'
    for cls in type(part).__mro__:
        adapter = _ADAPTERS.get(cls)
        if adapter is None:
            continue
        reason = adapter.unsupported_reason(model, part, cls)
        if reason is None:
            return adapter
        break
    with_part = f' with {type(part).__name__}' if part is not None else ''
    raise TypeError(f'no ODAM adapter for {type(model).__name__}{with_part} '
                    f'({reason}); supported: '
                    f'{"; ".join(supported_families())}')
