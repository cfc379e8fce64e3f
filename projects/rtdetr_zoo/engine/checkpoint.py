"""The one place that reads checkpoint files and unwraps their weights.

:func:`read_checkpoint` loads a local file or a URL (``http(s)://``,
``open-mmlab://``, ``torchvision://``, ``timm://`` (registered here), ...
through mmengine's ``CheckpointLoader``; ``http(s)://`` is re-registered
here, since mmengine's loader unpickles downloads in full) with
``torch.load``'s weights-only unpickler, allowing exactly the extra types
that mmengine 0.10.7 training checkpoints carry
(:data:`CHECKPOINT_SAFE_GLOBALS`: numpy arrays and scalars, mmengine's
``HistoryBuffer``). Nothing else is unpickled, so no
switch back to full pickle loading is needed.
:func:`register_checkpoint_safe_globals` (called when ``rtdetr_zoo`` is
imported) adds that allowance to torch's safe-globals list, so that
mmdet's own loaders (``init_detector``, ``DetInferencer``) read checkpoints
written before :class:`WeightsOnlyCheckpointHook` existed.

Checkpoints written by :class:`rtdetr_zoo.engine.RTDETRRunner` need no
allowance at all: :func:`encode_checkpoint_objects` stores the numpy and
``HistoryBuffer`` objects as tensors and Python values in tagged dicts
(:data:`ENCODED_TYPE_KEY`), which plain ``torch.load`` reads in any script;
:func:`read_checkpoint` turns them back (:func:`decode_checkpoint_objects`),
so a resume sees the message hub and random states as they were saved.

:func:`extract_state_dict` finds the model weights inside a checkpoint of any
of the layouts in use (mmengine, timm, official RT-DETR, bare state dicts);
:func:`~rtdetr_zoo.engine.official_converter.convert_checkpoint_layout`
converts the official RT-DETR and Ultralytics key names to ours.
"""
import logging
import os
import os.path as osp
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Callable, ContextManager, Optional, Union
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

_multiarray = np._core.multiarray

#: ``torch.load``'s ``map_location``: a device name, a device, a mapping or
#: a function of (storage, location).
MapLocation = Union[str, torch.device, dict, Callable, None]

# The statistics methods that a pickled HistoryBuffer refers to, as
# ``getattr(HistoryBuffer, name)``.
HISTORY_BUFFER_STATISTICS = ('current', 'max', 'mean', 'min')


def history_buffer_getattr(obj: Any, name: str) -> Callable:
    """``getattr`` as the unpickler sees it: resolves only
    ``HistoryBuffer.<statistic>`` (:data:`HISTORY_BUFFER_STATISTICS`), the
    one use of ``getattr`` in mmengine checkpoints.

    Raises:
        pickle.UnpicklingError: for any other object or name.
    """
    if obj is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) refused: only HistoryBuffer statistics '
        f'methods {HISTORY_BUFFER_STATISTICS} are resolved')


# The globals, beyond torch's own, that mmengine 0.10.7 checkpoints pickle
# (found by loading a checkpoint saved by tools/train.py): numpy arrays
# (HistoryBuffer logs, the numpy random state) and scalars (logged values)
# with their ``numpy.dtype`` and its classes (float64 values, int64 counts,
# the uint32 random state), the message hub's HistoryBuffer and the
# ``getattr(HistoryBuffer, 'mean')``-style references to its statistics
# methods (served by :func:`history_buffer_getattr`, not by ``getattr``
# itself). Files written with numpy 1.x name the two numpy functions under
# ``numpy.core``; the aliases let them load too.
CHECKPOINT_SAFE_GLOBALS = [
    _multiarray._reconstruct,
    (_multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
    _multiarray.scalar,
    (_multiarray.scalar, 'numpy.core.multiarray.scalar'),
    np.ndarray,
    np.dtype,
    np.dtypes.Float64DType,
    np.dtypes.Int64DType,
    np.dtypes.UInt32DType,
    HistoryBuffer,
    (history_buffer_getattr, 'builtins.getattr'),
]


def register_checkpoint_safe_globals() -> None:
    """Add :data:`CHECKPOINT_SAFE_GLOBALS` to torch's process-wide
    safe-globals list (``torch.serialization.add_safe_globals``, which is
    idempotent). Called when ``rtdetr_zoo`` is imported, which every config
    does through ``custom_imports``.

    Afterwards every ``torch.load`` of the process with its default
    ``weights_only=True`` also reads checkpoints in mmengine 0.10.7's own
    layout, as rtdetr_zoo wrote them before
    :class:`~rtdetr_zoo.engine.WeightsOnlyCheckpointHook`: mmdet's
    ``init_detector`` and ``DetInferencer`` (through mmengine's
    ``load_from_local``) included. The
    allowance stays narrow: numpy arrays and scalars of the three dtypes
    listed (an object array needs a dtype class that is not allowed), the
    ``HistoryBuffer`` class (constructing one only builds numpy arrays), and
    ``builtins.getattr`` as :func:`history_buffer_getattr`, which resolves
    the four ``HistoryBuffer`` statistics methods and raises for every other
    object or name, so no function becomes reachable through it. Any other
    global is refused as before.
    """
    torch.serialization.add_safe_globals(CHECKPOINT_SAFE_GLOBALS)


#: The key of the tagged dicts that stand for a numpy or ``HistoryBuffer``
#: object in checkpoints written through :func:`encode_checkpoint_objects`;
#: its value names the type (``'numpy.ndarray'``, ``'numpy.generic'``,
#: ``'mmengine.HistoryBuffer'``).
ENCODED_TYPE_KEY = '__rtdetr_zoo_encoded__'

# The numpy dtypes that torch tensors hold exactly (and, for scalars, that
# ``.item()`` turns into a Python number exactly).
_ENCODABLE_DTYPES = frozenset(np.dtype(name) for name in (
    'bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32',
    'uint64', 'float16', 'float32', 'float64', 'complex64', 'complex128'))

# Values that torch's weights-only unpickler reads without an allowance.
_PLAIN_TYPES = (torch.Tensor, torch.Size, torch.dtype, torch.device, str,
                bytes, bytearray, bool, int, float, complex, type(None))


def _encodable(dtype):
    return dtype.newbyteorder('=') in _ENCODABLE_DTYPES


def _encode_array(array):
    native = np.array(array, dtype=array.dtype.newbyteorder('='), order='C',
                      copy=True)
    return {ENCODED_TYPE_KEY: 'numpy.ndarray', 'dtype': array.dtype.str,
            'data': torch.from_numpy(native)}


def _child(where, key):
    return f'{where}.{key}' if isinstance(key, str) else f'{where}[{key!r}]'


def _rebuilt(obj, items):
    """``obj`` itself when no item changed, else a new container of its
    type (an ``OrderedDict`` keeps its ``_metadata``)."""
    if isinstance(obj, dict):
        if all(new is obj[key] for key, new in items):
            return obj
        rebuilt = type(obj)(items)
        if hasattr(obj, '_metadata'):
            rebuilt._metadata = obj._metadata
        return rebuilt
    if all(new is old for new, old in zip(items, obj)):
        return obj
    return type(obj)(items)


def _encode(obj, where, unconverted):
    if type(obj) in (dict, OrderedDict):
        return _rebuilt(obj, [(key, _encode(value, _child(where, key),
                                            unconverted))
                              for key, value in obj.items()])
    if type(obj) in (list, tuple):
        return _rebuilt(obj, [_encode(value, f'{where}[{i}]', unconverted)
                              for i, value in enumerate(obj)])
    # numpy.float64 and numpy.complex128 derive from float and complex: the
    # numpy types are checked before the plain ones.
    if isinstance(obj, HistoryBuffer):
        log_history, count_history = obj.data
        if _encodable(log_history.dtype) and _encodable(count_history.dtype):
            return {ENCODED_TYPE_KEY: 'mmengine.HistoryBuffer',
                    'max_length': obj.max_length,
                    'log_history': _encode_array(log_history),
                    'count_history': _encode_array(count_history)}
    elif isinstance(obj, np.ndarray):
        if _encodable(obj.dtype):
            return _encode_array(obj)
    elif isinstance(obj, np.generic):
        if _encodable(obj.dtype):
            return {ENCODED_TYPE_KEY: 'numpy.generic',
                    'dtype': obj.dtype.str, 'value': obj.item()}
    elif isinstance(obj, _PLAIN_TYPES):
        return obj
    kind = type(obj)
    unconverted.append(f'{where} ({kind.__module__}.{kind.__qualname__})')
    return obj


def encode_checkpoint_objects(checkpoint: dict) -> tuple:
    """``checkpoint`` with every numpy array and scalar (numeric dtypes) and
    every mmengine ``HistoryBuffer`` replaced by a tagged dict of tensors and
    Python values (:data:`ENCODED_TYPE_KEY`), which torch's weights-only
    unpickler reads without any allowance.

    An array becomes ``{KEY: 'numpy.ndarray', 'dtype': '<u4', 'data':
    tensor}`` (the tensor has the array's shape and dtype), a scalar
    ``{KEY: 'numpy.generic', 'dtype': '<f8', 'value': 0.25}``, a
    ``HistoryBuffer`` ``{KEY: 'mmengine.HistoryBuffer', 'max_length': N,
    'log_history': array, 'count_history': array}``;
    :func:`decode_checkpoint_objects` restores them exactly. Nothing is
    modified in place: a container that holds such an object is copied (an
    ``OrderedDict`` with its ``_metadata``), any other is returned as it is
    (the state dicts of tensors are not copied).

    Args:
        checkpoint (dict): A checkpoint as mmengine's Runner builds it
            (``meta``, ``state_dict``, ``message_hub``, ``optimizer``, ...).

    Returns:
        tuple[dict, list[str]]: The encoded checkpoint, and the entries left
        as they were because they are neither plain values nor of the types
        above (e.g. ``'meta.obj (foo.Bar)'``), which the weights-only
        unpickler will refuse.
    """
    unconverted = []
    return _encode(checkpoint, 'checkpoint', unconverted), unconverted


def _decode_tagged(obj, where, source):
    tag = obj[ENCODED_TYPE_KEY]
    try:
        if tag == 'numpy.ndarray':
            return obj['data'].cpu().numpy().astype(np.dtype(obj['dtype']))
        if tag == 'numpy.generic':
            return np.dtype(obj['dtype']).type(obj['value'])
        if tag == 'mmengine.HistoryBuffer':
            return HistoryBuffer(
                _decode_tagged(obj['log_history'], where, source),
                _decode_tagged(obj['count_history'], where, source),
                obj['max_length'])
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f'checkpoint {source}: {where} is a malformed encoded {tag} '
            f'({type(err).__name__}: {err})') from err
    raise ValueError(
        f'checkpoint {source}: {where} has the unknown encoded type {tag!r} '
        f'(known: numpy.ndarray, numpy.generic, mmengine.HistoryBuffer)')


def _decode(obj, where, source):
    if type(obj) in (dict, OrderedDict):
        if ENCODED_TYPE_KEY in obj:
            return _decode_tagged(obj, where, source)
        return _rebuilt(obj, [(key, _decode(value, _child(where, key),
                                            source))
                              for key, value in obj.items()])
    if type(obj) in (list, tuple):
        return _rebuilt(obj, [_decode(value, f'{where}[{i}]', source)
                              for i, value in enumerate(obj)])
    return obj


def decode_checkpoint_objects(checkpoint: dict, source: str = '') -> dict:
    """The inverse of :func:`encode_checkpoint_objects`: the tagged dicts
    of ``checkpoint`` turned back into numpy arrays and scalars (same dtype,
    shape and values) and ``HistoryBuffer`` objects; everything else as it
    is (a checkpoint without tagged dicts is returned itself).

    Raises:
        ValueError: A tagged dict of an unknown type or with missing
            fields; the message names ``source`` and the entry.
    """
    return _decode(checkpoint, 'checkpoint', source or 'checkpoint')


# Top-level keys under which checkpoints keep the model weights, in order of
# preference after the official RT-DETR ``{'ema': {'module': ...}}``.
STATE_DICT_KEYS = ('state_dict', 'model', 'state_dict_ema')


#: Where ``timm://NAME`` checkpoints come from: timm's weights on the
#: Hugging Face hub (``hf_hub_id='timm/'`` of timm's pretrained configs).
TIMM_HUB_URL = ('https://huggingface.co/timm/{name}/resolve/main/'
                'pytorch_model.bin')


@CheckpointLoader.register_scheme(prefixes='timm://')
def load_from_timm_hub(filename: str,
                       map_location: MapLocation = None) -> dict:
    """Read ``timm://NAME`` (e.g. ``timm://mobilenetv4_conv_small.
    e2400_r224_in1k``): timm's weights ``NAME`` from :data:`TIMM_HUB_URL`,
    downloaded once into torch hub's cache as ``timm_NAME.bin`` (every timm
    file is called ``pytorch_model.bin``, so the cache needs the name)."""
    name = filename[len('timm://'):]
    return torch.hub.load_state_dict_from_url(
        TIMM_HUB_URL.format(name=name), map_location=map_location,
        file_name=f'timm_{name}.bin', weights_only=True)


def hub_cache_path(url: str, model_dir: Optional[str] = None) -> str:
    """Where a downloaded checkpoint ``url`` is kept: ``model_dir`` or
    torch hub's ``checkpoints/`` folder, under the URL's file name (the
    place ``torch.hub.load_state_dict_from_url`` uses)."""
    folder = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    return osp.join(folder, osp.basename(urlparse(url).path))


def download_to_hub_cache(url: str, model_dir: Optional[str] = None,
                          progress: bool = True) -> str:
    """Download ``url`` once into :func:`hub_cache_path` and return that
    path (an existing file is reused)."""
    path = hub_cache_path(url, model_dir)
    if not osp.isfile(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
        torch.hub.download_url_to_file(url, path, progress=progress)
    return path


@CheckpointLoader.register_scheme(prefixes=('http://', 'https://'),
                                  force=True)
def load_from_http_weights_only(filename: str,
                                map_location: MapLocation = None,
                                model_dir: Optional[str] = None,
                                progress: bool = os.isatty(0)) -> dict:
    """mmengine's ``http(s)://`` loader (``load_from_http``: download on
    local rank 0 first, then the other ranks), reading the downloaded file
    with the weights-only unpickler: mmengine 0.10.7's goes through
    ``torch.hub.load_state_dict_from_url``, whose ``weights_only`` defaults
    to ``False``, so a downloaded file could run any pickled code. The file
    is kept in torch hub's cache (:func:`download_to_hub_cache`)."""
    rank, world_size = get_dist_info()
    if rank == 0:
        path = download_to_hub_cache(filename, model_dir, progress)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            path = download_to_hub_cache(filename, model_dir, progress)
    return torch.load(path, map_location=map_location, weights_only=True)


def checkpoint_safe_globals() -> ContextManager:
    """Context manager: inside it, ``torch.load`` with its default
    ``weights_only=True`` also accepts :data:`CHECKPOINT_SAFE_GLOBALS`.

    Only the entries missing from torch's safe-globals list are added, and
    only those are removed on exit (``torch.serialization.safe_globals``
    removes what it was given), so the process-wide registration of
    :func:`register_checkpoint_safe_globals` outlives a read."""
    registered = set(torch.serialization.get_safe_globals())
    return torch.serialization.safe_globals(
        [entry for entry in CHECKPOINT_SAFE_GLOBALS
         if entry not in registered])


def _is_remote(filename):
    return '://' in filename


def _unpickling_reason(err):
    """The short reason of a weights-only unpickler refusal."""
    message = str(err)
    refused = re.search(r'(?:Unsupported global: GLOBAL|unsupported GLOBAL) '
                        r'(\S+)', message)
    if refused:
        return (f'it pickles {refused[1]}, which is neither a tensor nor '
                f'one of the mmengine checkpoint types allowed by '
                f'rtdetr_zoo.engine.checkpoint.CHECKPOINT_SAFE_GLOBALS')
    detail = re.search(r'WeightsUnpickler error:\s*(.+)', message)
    if detail:
        return detail[1].strip()
    return message.strip().splitlines()[0] if message.strip() else repr(err)


def read_checkpoint(filename: str, map_location: MapLocation = 'cpu',
                    logger: Union[str, logging.Logger, None] = None) -> dict:
    """Read a checkpoint file or URL with the weights-only unpickler.

    Args:
        filename (str): Local path, or a URL / mmengine scheme
            (``http(s)://``, ``open-mmlab://``, ``torchvision://``, ...).
        map_location (str | callable): As for ``torch.load``.
        logger (str | logging.Logger, optional): Where mmengine logs which
            loader it uses (``None``: not logged).

    Returns:
        dict: The checkpoint as saved (e.g. ``meta``, ``state_dict``,
        ``optimizer``, ``message_hub`` for an mmengine checkpoint), with the
        objects that :func:`encode_checkpoint_objects` stored as tagged
        dicts restored (``HistoryBuffer``, numpy arrays and scalars).

    Raises:
        FileNotFoundError: A local ``filename`` that does not exist.
        RuntimeError: A file that cannot be read (truncated, not written by
            ``torch.save``, or pickling other objects than tensors and
            :data:`CHECKPOINT_SAFE_GLOBALS`), or a URL that cannot be
            downloaded; the message names the file or URL and the reason.
        ValueError: A malformed tagged dict (the message names the file and
            the entry).
    """
    filename = str(filename)
    remote = _is_remote(filename)
    if not remote and not osp.isfile(osp.expanduser(filename)):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    try:
        with checkpoint_safe_globals():
            checkpoint = CheckpointLoader.load_checkpoint(
                filename, map_location=map_location,
                logger='silent' if logger is None else logger)
    except pickle.UnpicklingError as err:
        # An Ultralytics checkpoint (a pickled model): its tensors are read
        # by the restricted reader of ultralytics_checkpoint.py (imported
        # here, as it builds on this module's allow-list).
        from .ultralytics_checkpoint import (read_ultralytics_checkpoint,
                                             refused_ultralytics_file)
        ultralytics_file = refused_ultralytics_file(filename, err)
        if ultralytics_file is not None:
            return read_ultralytics_checkpoint(ultralytics_file)
        raise RuntimeError(f'cannot read checkpoint {filename}: '
                           f'{_unpickling_reason(err)}') from err
    except FileNotFoundError as err:
        # A scheme that maps to a local file (e.g. open-mmlab://) missing.
        raise FileNotFoundError(
            f'checkpoint file not found: {filename} ({err})') from err
    except Exception as err:  # noqa: BLE001 (download or read failure)
        reason = f'{type(err).__name__}: {err}'
        if remote:
            raise RuntimeError(
                f'cannot download checkpoint {filename} ({reason}); download '
                f'the file by other means and pass its local path '
                f'instead') from err
        raise RuntimeError(
            f'cannot read checkpoint {filename} ({reason}): is it a '
            f'complete file written by torch.save?') from err
    return decode_checkpoint_objects(checkpoint, source=filename)


def extract_state_dict(checkpoint: Mapping, prefix: Optional[str] = None,
                       source: str = '') -> 'OrderedDict[str, torch.Tensor]':
    """The model weights inside a checkpoint, as a flat state dict.

    Unwraps, in order: official RT-DETR's ``{'ema': {'module': ...}}``, then
    the first of ``state_dict`` / ``model`` / ``state_dict_ema`` present
    (mmengine, timm); otherwise ``checkpoint`` is taken as the state dict.
    DDP's ``module.`` is stripped from every key that has it; then, with a
    ``prefix`` (e.g. ``'backbone.'`` or ``'backbone'``), only the keys under
    it are kept, with the prefix removed.

    Args:
        checkpoint (Mapping): A loaded checkpoint (:func:`read_checkpoint`).
        prefix (str, optional): Keep only the keys under this prefix.
        source (str): Where the checkpoint comes from, for error messages.

    Returns:
        OrderedDict[str, torch.Tensor]: The weights, in the file's order.

    Raises:
        TypeError: ``checkpoint`` or the unwrapped entry is not a mapping of
            tensors.
        KeyError: No key starts with ``prefix``.
    """
    what = f'checkpoint {source}' if source else 'checkpoint'
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'{what} holds a {type(checkpoint).__name__}, not a '
                        f'dict of weights')
    state = checkpoint
    ema = checkpoint.get('ema')
    if isinstance(ema, Mapping) and isinstance(ema.get('module'), Mapping):
        state = ema['module']
    else:
        for key in STATE_DICT_KEYS:
            if isinstance(checkpoint.get(key), Mapping):
                state = checkpoint[key]
                break
    not_tensors = [k for k, v in state.items()
                   if not isinstance(v, torch.Tensor)]
    if not_tensors or not state:
        raise TypeError(
            f'{what} has no state dict of tensors (looked under '
            f'ema.module, {", ".join(STATE_DICT_KEYS)} and the top level); '
            f'non-tensor entries: {not_tensors[:5]}, top-level keys: '
            f'{list(checkpoint)[:8]}')
    state = OrderedDict(
        (k[len('module.'):] if k.startswith('module.') else k, v)
        for k, v in state.items())
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state = OrderedDict((k[len(prefix):], v) for k, v in state.items()
                            if k.startswith(prefix))
        if not state:
            raise KeyError(f'no key of {what} starts with prefix {prefix!r}')
    return state
