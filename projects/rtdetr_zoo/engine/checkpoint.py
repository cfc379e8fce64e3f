"""The one place that reads checkpoint files and unwraps their weights.

:func:`read_checkpoint` loads a local file or a URL (``http(s)://``,
``open-mmlab://``, ``torchvision://``, ``timm://`` (registered here), ...
through mmengine's ``CheckpointLoader``) with ``torch.load``'s weights-only
unpickler, allowing exactly the extra types that mmengine 0.10.7 training
checkpoints carry (:data:`CHECKPOINT_SAFE_GLOBALS`: numpy arrays and
scalars, mmengine's ``HistoryBuffer``). Nothing else is unpickled, so no process-wide switch
back to full pickle loading is needed. :func:`checkpoint_safe_globals` is the
same allowance as a context manager, for code that calls ``torch.load``
itself (mmengine's Runner, see :class:`rtdetr_zoo.engine.RTDETRRunner`).

:func:`extract_state_dict` finds the model weights inside a checkpoint of any
of the layouts in use (mmengine, timm, official RT-DETR, bare state dicts).
"""
import os.path as osp
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

_multiarray = np._core.multiarray

# The statistics methods that a pickled HistoryBuffer refers to, as
# ``getattr(HistoryBuffer, name)``.
HISTORY_BUFFER_STATISTICS = ('current', 'max', 'mean', 'min')


def history_buffer_getattr(obj, name):
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

# Top-level keys under which checkpoints keep the model weights, in order of
# preference after the official RT-DETR ``{'ema': {'module': ...}}``.
STATE_DICT_KEYS = ('state_dict', 'model', 'state_dict_ema')


#: Where ``timm://NAME`` checkpoints come from: timm's weights on the
#: Hugging Face hub (``hf_hub_id='timm/'`` of timm's pretrained configs).
TIMM_HUB_URL = ('https://huggingface.co/timm/{name}/resolve/main/'
                'pytorch_model.bin')


@CheckpointLoader.register_scheme(prefixes='timm://')
def load_from_timm_hub(filename, map_location=None):
    """Read ``timm://NAME`` (e.g. ``timm://mobilenetv4_conv_small.
    e2400_r224_in1k``): timm's weights ``NAME`` from :data:`TIMM_HUB_URL`,
    downloaded once into torch hub's cache as ``timm_NAME.bin`` (every timm
    file is called ``pytorch_model.bin``, so the cache needs the name)."""
    name = filename[len('timm://'):]
    return torch.hub.load_state_dict_from_url(
        TIMM_HUB_URL.format(name=name), map_location=map_location,
        file_name=f'timm_{name}.bin', weights_only=True)


def checkpoint_safe_globals():
    """Context manager: inside it, ``torch.load`` with its default
    ``weights_only=True`` also accepts :data:`CHECKPOINT_SAFE_GLOBALS`."""
    return torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS)


def _is_remote(filename):
    return '://' in filename


def _unpickling_reason(err):
    """The short reason of a weights-only unpickler refusal."""
    message = str(err)
    refused = re.search(r'Unsupported global: GLOBAL (\S+)', message)
    if refused:
        return (f'it pickles {refused[1]}, which is neither a tensor nor '
                f'one of the mmengine checkpoint types allowed by '
                f'rtdetr_zoo.engine.checkpoint.CHECKPOINT_SAFE_GLOBALS')
    detail = re.search(r'WeightsUnpickler error:\s*(.+)', message)
    if detail:
        return detail[1].strip()
    return message.strip().splitlines()[0] if message.strip() else repr(err)


def read_checkpoint(filename, map_location='cpu', logger=None):
    """Read a checkpoint file or URL with the weights-only unpickler.

    Args:
        filename (str): Local path, or a URL / mmengine scheme
            (``http(s)://``, ``open-mmlab://``, ``torchvision://``, ...).
        map_location (str | callable): As for ``torch.load``.
        logger (str | logging.Logger, optional): Where mmengine logs which
            loader it uses (``None``: not logged).

    Returns:
        dict: The checkpoint as saved (e.g. ``meta``, ``state_dict``,
        ``optimizer``, ``message_hub`` for an mmengine checkpoint).

    Raises:
        FileNotFoundError: A local ``filename`` that does not exist.
        RuntimeError: A file that cannot be read (truncated, not written by
            ``torch.save``, or pickling other objects than tensors and
            :data:`CHECKPOINT_SAFE_GLOBALS`), or a URL that cannot be
            downloaded; the message names the file or URL and the reason.
    """
    filename = str(filename)
    remote = _is_remote(filename)
    if not remote and not osp.isfile(osp.expanduser(filename)):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    try:
        with checkpoint_safe_globals():
            return CheckpointLoader.load_checkpoint(
                filename, map_location=map_location,
                logger='silent' if logger is None else logger)
    except pickle.UnpicklingError as err:
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


def extract_state_dict(checkpoint, prefix=None, source=''):
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
