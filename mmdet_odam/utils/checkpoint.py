"""Checkpoint files: loaded without running code from them, checked against
the model they are meant for.

torch >= 2.6 loads with ``weights_only=True``: only tensors, containers and a
short list of allow-listed types may be unpickled, so a file cannot run code.
Checkpoints written by MMEngine's ``Runner`` also hold its message hub
(``HistoryBuffer`` objects, numpy arrays and scalars) and are refused by that
default, which breaks ``load_from`` / ``resume``. :func:`load_checkpoint_file`
keeps torch's ``weights_only`` enforcement and allow-lists exactly those data
types (:func:`mmengine_checkpoint_globals`); nothing else is accepted.

Nothing is registered process-wide: the allow-list is added to torch's for
the duration of one load (under a lock, removing only what it added), and
mmengine's own loaders are untouched; :class:`mmdet_odam.engine.
SafeCheckpointRunner` uses this loader for ``load_from`` and ``resume``.

Full unpickling (which can run any code the file contains) happens only when
the caller names the file as trusted: ``trusted=True`` here,
``--trust-checkpoint`` in the tools, ``trusted_checkpoints=[path]`` in a
config run by :class:`~mmdet_odam.engine.SafeCheckpointRunner`.
"""
import io
import os
import os.path as osp
import pickle
import re
import threading
import warnings
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

import torch

# one load at a time may widen torch's allow-list (it is a process-wide set)
_ALLOW_LIST_LOCK = threading.Lock()


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds objects outside the allow-list (loading it would
    need full unpickling, which can run code from the file)."""


class CheckpointMismatchError(ValueError):
    """The checkpoint's weights do not fit the model built from the config."""


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to what MMEngine's pickles use it for: the
    statistics methods of ``HistoryBuffer`` (``min``, ``max``, ``mean``,
    ``current`` and user-registered ones), pickled as
    ``getattr(HistoryBuffer, 'min')``.

    Raises:
        pickle.UnpicklingError: For any other object or a private name.
    """
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and isinstance(name, str) and \
            not name.startswith('_') and \
            callable(getattr(HistoryBuffer, name, None)):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({type(obj).__name__}, {name!r}) is not allowed in a '
        'checkpoint')


def mmengine_checkpoint_globals() -> List[Union[Callable, Tuple[Callable,
                                                                str]]]:
    """The types MMEngine / MMDetection checkpoints hold beyond torch's own
    ``weights_only`` allow-list, in the form of
    :func:`torch.serialization.safe_globals`.

    ``HistoryBuffer`` (message hub), numpy arrays, dtypes and scalars (under
    numpy 2's ``numpy._core`` and numpy 1's ``numpy.core`` names, so that
    files written with either load), and ``builtins.getattr`` replaced by
    :func:`_history_buffer_getattr`.
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer
    multiarray = np._core.multiarray if hasattr(np, '_core') else \
        np.core.multiarray
    entries: List[Union[Callable, Tuple[Callable, str]]] = [
        HistoryBuffer, np.ndarray, np.dtype,
        (_history_buffer_getattr, 'builtins.getattr'),
        (_history_buffer_getattr, '__builtin__.getattr'),
    ]
    for core in ('numpy._core', 'numpy.core'):
        entries += [(multiarray._reconstruct, f'{core}.multiarray._reconstruct'),
                    (multiarray.scalar, f'{core}.multiarray.scalar')]
    # a dtype is rebuilt as an instance of its own class (Float64DType...)
    dtype_classes = {type(np.dtype(code)) for code in np.typecodes['All']}
    entries += sorted(dtype_classes, key=lambda cls: cls.__name__)
    return entries


def _allow_list_key(entry) -> str:
    if isinstance(entry, tuple):
        return entry[1]
    return f'{entry.__module__}.{entry.__qualname__}'


class _allowed_checkpoint_globals:
    """Context manager: torch's ``weights_only`` allow-list plus
    :func:`mmengine_checkpoint_globals`, removed again on exit (only the
    entries this added; a user's own additions stay)."""

    def __enter__(self):
        _ALLOW_LIST_LOCK.acquire()
        try:
            present = {_allow_list_key(e)
                       for e in torch.serialization.get_safe_globals()}
            self.scope = torch.serialization.safe_globals(
                [e for e in mmengine_checkpoint_globals()
                 if _allow_list_key(e) not in present])
            self.scope.__enter__()
        except BaseException:
            _ALLOW_LIST_LOCK.release()
            raise
        return self

    def __exit__(self, *exc_info):
        try:
            self.scope.__exit__(*exc_info)
        finally:
            _ALLOW_LIST_LOCK.release()


def _unsafe_globals(data: bytes) -> List[str]:
    """Globals of a (zip) checkpoint outside both allow-lists; ``[]`` when
    the file is not in the zip format torch can inspect."""
    try:
        with _allowed_checkpoint_globals():
            names = torch.serialization.get_unsafe_globals_in_checkpoint(
                io.BytesIO(data))
    except Exception:  # legacy format or unparsable: no names to give
        return []
    return sorted(names)


def load_checkpoint_file(filename: Union[str, os.PathLike],
                         map_location: Any = 'cpu',
                         trusted: bool = False) -> Any:
    """Load a checkpoint file without running code from it.

    Args:
        filename (str | PathLike): Local checkpoint file.
        map_location: As :func:`torch.load`.
        trusted (bool): Unpickle the file fully (``weights_only=False``).
            Only for files you trust: unpickling can run any code.

    Returns:
        The loaded object (usually a dict with ``state_dict`` and ``meta``).

    Raises:
        FileNotFoundError: If the file does not exist.
        UnsafeCheckpointError: If the file holds objects outside the
            allow-list; the message names them and the opt-in.
    """
    filename = osp.expanduser(os.fspath(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    if trusted:
        return torch.load(filename, map_location=map_location,
                          weights_only=False)
    with open(filename, 'rb') as f:  # read once: checked = loaded bytes
        data = f.read()
    try:
        with _allowed_checkpoint_globals():
            return torch.load(io.BytesIO(data), map_location=map_location,
                              weights_only=True)
    except pickle.UnpicklingError as e:
        names = _unsafe_globals(data)
        what = ('objects of ' + ', '.join(names)) if names else \
            f'objects torch refused ({str(e).splitlines()[0]})'
        raise UnsafeCheckpointError(
            f'checkpoint {filename} holds {what}, which only full unpickling '
            'can load, and unpickling can run code from the file; if you '
            'trust this file, load it with trusted=True (tools: '
            '--trust-checkpoint, configs: trusted_checkpoints=[path])'
        ) from None


def is_trusted(filename: str, trusted_files: Sequence[str]) -> bool:
    """Whether ``filename`` is one of ``trusted_files`` (same real path)."""
    real = osp.realpath(osp.expanduser(filename))
    return any(osp.realpath(osp.expanduser(t)) == real for t in trusted_files)


# -- matching a checkpoint to a model -----------------------------------------
def checkpoint_state_dict(checkpoint: Any) -> Dict[str, torch.Tensor]:
    """Model weights of a loaded checkpoint, ``module.`` prefixes removed."""
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(
            f'checkpoint is a {type(checkpoint).__name__}, not a dict of '
            'weights')
    state = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state, dict):
        raise CheckpointMismatchError("checkpoint['state_dict'] is not a dict")
    return {re.sub(r'^module\.', '', k): v for k, v in state.items()}


def compare_state_dicts(model_state: Dict[str, torch.Tensor],
                        ckpt_state: Dict[str, torch.Tensor]
                        ) -> Tuple[List[str], List[str], List[tuple]]:
    """Missing keys, unexpected keys and (key, ckpt shape, model shape)
    mismatches. BatchNorm's ``num_batches_tracked`` may be missing."""
    missing = [k for k in model_state if k not in ckpt_state
               and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in ckpt_state if k not in model_state]
    mismatched = []
    for key, value in model_state.items():
        other = ckpt_state.get(key)
        if other is None or not hasattr(other, 'shape'):
            continue
        if tuple(other.shape) != tuple(value.shape):
            mismatched.append((key, tuple(other.shape), tuple(value.shape)))
    return missing, unexpected, mismatched


def _first(items: Sequence, n: int = 3) -> str:
    shown = ', '.join(str(i) for i in items[:n])
    return shown + (f' (+{len(items) - n} more)' if len(items) > n else '')


def mismatch_summary(model: torch.nn.Module,
                     state: Dict[str, torch.Tensor]) -> Tuple[str, List[str]]:
    """One line on how ``state`` differs from the model's weights (empty
    when it fits), and the keys whose shapes differ."""
    missing, unexpected, mismatched = compare_state_dicts(
        model.state_dict(), state)
    problems = []
    if mismatched:
        problems.append(f'{len(mismatched)} shape mismatch(es): ' + _first(
            [f'{k} checkpoint {list(a)} vs model {list(b)}'
             for k, a, b in mismatched]))
    if missing:
        problems.append(f'{len(missing)} missing key(s): {_first(missing)}')
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected key(s): '
                        f'{_first(unexpected)}')
    return '; '.join(problems), [k for k, _, _ in mismatched]


def check_state_dict(model: torch.nn.Module,
                     state: Dict[str, torch.Tensor], filename: str) -> None:
    """Raise :class:`CheckpointMismatchError` (one line, the first differing
    keys) unless ``state`` has exactly the model's weights and shapes."""
    problems, _ = mismatch_summary(model, state)
    if problems:
        raise CheckpointMismatchError(
            f'checkpoint {filename} does not match the config: {problems} '
            '(pass --allow-partial-load to load it anyway)')


def load_checkpoint_checked(model: torch.nn.Module, filename: str,
                            trusted: bool = False,
                            strict: bool = True) -> dict:
    """Load weights into ``model``, refusing checkpoints that do not fit.

    mmengine's ``load_checkpoint`` only warns about missing, unexpected or
    wrongly shaped weights, which leaves a silently half-random model; here
    any such difference raises unless ``strict=False``. Sets
    ``model.dataset_meta`` from the checkpoint's ``meta`` (``dataset_meta``
    or old-style ``CLASSES``) when present.

    Raises:
        FileNotFoundError: If the file does not exist.
        UnsafeCheckpointError: See :func:`load_checkpoint_file`.
        CheckpointMismatchError: If it cannot be read or does not match, with
            the first differing keys in the message.
    """
    try:
        checkpoint = load_checkpoint_file(filename, 'cpu', trusted=trusted)
    except (FileNotFoundError, UnsafeCheckpointError):
        raise
    except Exception as e:  # truncated file, not a checkpoint...
        raise CheckpointMismatchError(
            f'cannot read checkpoint {filename}: {type(e).__name__}: '
            f'{str(e).splitlines()[0] if str(e) else ""}') from None
    state = checkpoint_state_dict(checkpoint)
    if strict:
        check_state_dict(model, state, filename)
    else:  # what fits is loaded, the rest keeps its initialisation
        problems, wrong_shape = mismatch_summary(model, state)
        if problems:
            warnings.warn(f'checkpoint {filename} loaded partially: '
                          f'{problems}')
        state = {k: v for k, v in state.items() if k not in wrong_shape}
    model.load_state_dict(state, strict=False)
    meta = checkpoint.get('meta') or {}
    if isinstance(meta, dict) and 'dataset_meta' in meta:
        model.dataset_meta = {k.lower(): v
                              for k, v in meta['dataset_meta'].items()}
    elif isinstance(meta, dict) and 'CLASSES' in meta:
        model.dataset_meta = {'classes': meta['CLASSES']}
    return checkpoint


__all__ = [
    'UnsafeCheckpointError', 'CheckpointMismatchError',
    'mmengine_checkpoint_globals', 'load_checkpoint_file', 'is_trusted',
    'checkpoint_state_dict', 'compare_state_dicts', 'check_state_dict',
    'load_checkpoint_checked'
]
