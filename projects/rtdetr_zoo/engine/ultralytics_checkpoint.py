"""Ultralytics RT-DETR checkpoints (``rtdetr-l.pt``, ``rtdetr-x.pt``), read
without ultralytics and without unpickling code.

Ultralytics saves a whole pickled model: its trainer
(``ultralytics/engine/trainer.py``, ``BaseTrainer.save_model``)
``torch.save``\\ s a dict whose ``'ema'`` is a copy of the
``ultralytics.nn.tasks.RTDETRDetectionModel`` in fp16 (a tree of ultralytics
and ``torch.nn`` module classes), and ``strip_optimizer``
(``ultralytics/utils/torch_utils.py``), which writes the released files,
moves it to ``'model'`` beside ``'date'``, ``'version'``, ``'train_args'``,
``'epoch'`` ... torch's weights-only unpickler refuses those classes, and
unpickling them for real would import ultralytics and run whatever the file
names.

:func:`read_ultralytics_checkpoint` reads the zip archive that
``torch.save`` writes itself (``<archive>/data.pkl`` and one
``<archive>/data/<key>`` record per storage, as ``torch.serialization``'s
``_load`` does) with :class:`UltralyticsUnpickler`. It resolves only torch's
tensor-rebuild functions and storage types, torch dtypes,
``collections.OrderedDict``, ``set`` and the numpy / mmengine types of
:data:`~rtdetr_zoo.engine.checkpoint.CHECKPOINT_SAFE_GLOBALS`; every
``ultralytics.*`` and ``torch.nn.modules.*`` class becomes an
:class:`InertObject`, which only records its pickled state. Any other
global is refused with an error naming it. The module tree is then walked
into a flat fp32 state dict with the names of
``RTDETRDetectionModel.state_dict()`` (``model.0.stem1.conv.weight``, ...),
which
:func:`~rtdetr_zoo.engine.official_converter.convert_ultralytics_state_dict`
maps onto our RT-DETR. Tensors are read onto the CPU.
"""
import io
import logging
import os.path as osp
import pickle
import re
import sys
import warnings
import zipfile
from collections import OrderedDict
from typing import IO, Any, Optional

import torch
from mmengine.logging import print_log

from .checkpoint import CHECKPOINT_SAFE_GLOBALS, hub_cache_path
from .official_converter import ULTRALYTICS_BN_EPS

#: Modules whose classes are replaced by inert stand-ins: the ultralytics
#: model classes and the ``torch.nn`` modules inside them.
INERT_MODULE_PREFIXES = ('ultralytics.', 'torch.nn.modules.')

# Python 2 names that pickle protocol 2 writes for builtins.
_PY2_MODULES = {'__builtin__': 'builtins'}


def _qualified_name(obj):
    return f'{obj.__module__}.{obj.__qualname__}'


def _storage_dtype(obj):
    """The dtype of one of torch's typed storage classes
    (``torch.HalfStorage`` -> ``torch.float16``), or ``None`` for any other
    object. (Reading the class's ``dtype`` is what torch's loader does; the
    deprecation warning of typed storages is not for this use.)"""
    if not (isinstance(obj, type)
            and issubclass(obj, torch.storage.TypedStorage)):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        try:
            dtype = obj.dtype
        except Exception:  # noqa: BLE001 (the generic classes have none)
            return None
    return dtype if isinstance(dtype, torch.dtype) else None


def _allowed_globals():
    """``{'module.name': object}``: everything but the inert classes that
    :class:`UltralyticsUnpickler` resolves."""
    allowed = {
        'torch._utils._rebuild_tensor_v2': torch._utils._rebuild_tensor_v2,
        'torch._utils._rebuild_parameter': torch._utils._rebuild_parameter,
        'torch._utils._rebuild_parameter_with_state':
        torch._utils._rebuild_parameter_with_state,
        'collections.OrderedDict': OrderedDict,
        'builtins.set': set,
    }
    for name in dir(torch):
        obj = getattr(torch, name)
        if isinstance(obj, torch.dtype) or obj is torch.UntypedStorage or (
                _storage_dtype(obj) is not None):
            allowed[f'torch.{name}'] = obj
    for entry in CHECKPOINT_SAFE_GLOBALS:
        obj, name = entry if isinstance(entry, tuple) else (
            entry, _qualified_name(entry))
        allowed[name] = obj
    return allowed


ALLOWED_GLOBALS = _allowed_globals()
#: The storage types a tensor record may name, with their element dtype.
STORAGE_DTYPES = {torch.UntypedStorage: torch.uint8}
STORAGE_DTYPES.update(
    (obj, _storage_dtype(obj)) for obj in ALLOWED_GLOBALS.values()
    if _storage_dtype(obj) is not None)


class InertObject:
    """Stand-in for a pickled ultralytics or ``torch.nn`` class: records the
    state the file gives it (``pickled_state``, for a module its
    ``__dict__`` with ``_parameters``, ``_buffers``, ``_modules``) and the
    arguments of a call (``pickled_args``); it runs no code of the class.
    Subclasses made by :func:`inert_class` carry the pickled name."""

    pickled_name = ''

    def __init__(self, *args, **kwargs) -> None:
        self.pickled_args = args
        self.pickled_state = dict(kwargs)

    def __setstate__(self, state: Any) -> None:
        # ``(dict, slots)`` for classes with __slots__.
        if isinstance(state, tuple) and len(state) == 2:
            state = state[0]
        self.pickled_state = dict(state or {})

    def __repr__(self) -> str:
        return f'<inert {self.pickled_name}>'


_INERT_CLASSES = {}


def inert_class(qualified_name: str) -> type:
    """The :class:`InertObject` subclass standing in for
    ``qualified_name`` (one per name)."""
    if qualified_name not in _INERT_CLASSES:
        _INERT_CLASSES[qualified_name] = type(
            qualified_name.rpartition('.')[2], (InertObject, ),
            dict(pickled_name=qualified_name))
    return _INERT_CLASSES[qualified_name]


class UltralyticsUnpickler(pickle.Unpickler):
    """Unpickler of a ``torch.save`` archive's ``data.pkl`` that resolves
    only :data:`ALLOWED_GLOBALS` and inert stand-ins for the classes under
    :data:`INERT_MODULE_PREFIXES`, and reads tensor storages from the
    archive's ``data/<key>`` records.

    Args:
        file (file-like): The ``data.pkl`` bytes.
        archive (zipfile.ZipFile): The open archive.
        prefix (str): The archive's top folder with a trailing ``/``.
        byteorder (str): ``'little'`` or ``'big'`` (the ``byteorder``
            record).
    """

    def __init__(self, file: IO[bytes], archive: zipfile.ZipFile,
                 prefix: str, byteorder: str) -> None:
        super().__init__(file)
        self.archive = archive
        self.prefix = prefix
        self.byteorder = byteorder
        self.storages = {}

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)
        qualified = f'{module}.{name}'
        if qualified in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[qualified]
        if module.startswith(INERT_MODULE_PREFIXES) and name.isidentifier():
            return inert_class(qualified)
        raise pickle.UnpicklingError(
            f'refused global {qualified}: an Ultralytics checkpoint is read '
            f'as tensors, torch / ultralytics module classes and plain '
            f'containers only')

    def persistent_load(self, saved_id: Any) -> torch.storage.TypedStorage:
        if not (isinstance(saved_id, tuple) and len(saved_id) == 5
                and saved_id[0] in ('storage', b'storage')):
            raise pickle.UnpicklingError(
                f'unknown persistent record {saved_id!r:.80} (torch.save '
                f'writes only storages)')
        _, storage_type, key, _location, numel = saved_id
        if not isinstance(storage_type, type) or (
                storage_type not in STORAGE_DTYPES):
            raise pickle.UnpicklingError(
                f'storage record {key!r} names {storage_type!r}, not a torch '
                f'storage type')
        key = key.decode() if isinstance(key, bytes) else str(key)
        dtype = STORAGE_DTYPES[storage_type]
        if key not in self.storages:
            self.storages[key] = self._read_storage(key, int(numel), dtype)
        return self.storages[key]

    def _read_storage(self, key, numel, dtype):
        record = f'{self.prefix}data/{key}'
        try:
            data = self.archive.read(record)
        except KeyError:
            raise pickle.UnpicklingError(
                f'the archive has no record {record}') from None
        if len(data) != numel * dtype.itemsize:
            raise pickle.UnpicklingError(
                f'record {record} holds {len(data)} bytes, expected '
                f'{numel} x {dtype} ({numel * dtype.itemsize} bytes)')
        storage = (torch.UntypedStorage.from_buffer(data, dtype=torch.uint8)
                   if data else torch.UntypedStorage(0))
        if self.byteorder != sys.byteorder:
            storage.byteswap(dtype)
        return torch.storage.TypedStorage(
            wrap_storage=storage, dtype=dtype, _internal=True)


def _is_module(obj):
    return isinstance(obj, InertObject) and '_modules' in obj.pickled_state


def module_state_dict(module: InertObject,
                      prefix: str = '') -> OrderedDict:
    """The state dict of a pickled module tree (:class:`InertObject`\\ s),
    as ``nn.Module.state_dict()`` names it: each module's parameters, then
    its persistent buffers, then its children (``None`` entries skipped);
    floating-point tensors in fp32.

    Returns:
        OrderedDict[str, torch.Tensor]
    """
    state = module.pickled_state
    weights = OrderedDict()
    non_persistent = state.get('_non_persistent_buffers_set') or set()
    entries = list(state.get('_parameters', {}).items()) + [
        (name, value) for name, value in state.get('_buffers', {}).items()
        if name not in non_persistent]
    for name, value in entries:
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise TypeError(f'{prefix}{name} of {module.pickled_name} is a '
                            f'{type(value).__name__}, not a tensor')
        value = value.detach()
        weights[prefix + name] = (value.float() if value.is_floating_point()
                                  else value.clone())
    for name, child in state.get('_modules', {}).items():
        if child is None:
            continue
        if not _is_module(child):
            raise TypeError(f'{prefix}{name} of {module.pickled_name} is '
                            f'{child!r}, not a pickled module')
        weights.update(module_state_dict(child, f'{prefix}{name}.'))
    return weights


def _batchnorm_eps(module):
    """The sorted distinct ``eps`` of the pickled ``nn.BatchNorm2d``\\ s
    under ``module``."""
    found, stack = set(), [module]
    while stack:
        node = stack.pop()
        if node.pickled_name == 'torch.nn.modules.batchnorm.BatchNorm2d' \
                and isinstance(node.pickled_state.get('eps'), float):
            found.add(node.pickled_state['eps'])
        stack.extend(child for child in node.pickled_state.get(
            '_modules', {}).values() if _is_module(child))
    return sorted(found)


def _class_names(model):
    """The pickled model's ``names`` (``{index: name}`` or a list) as a
    tuple, or ``None`` when it has none of that form."""
    names = model.pickled_state.get('names')
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        names = [names[i] for i in range(len(names))]
    if isinstance(names, (list, tuple)) and names and all(
            isinstance(n, str) for n in names):
        return tuple(names)
    return None


def read_ultralytics_checkpoint(filename: str) -> dict:
    """Read the weights of an Ultralytics checkpoint without unpickling code.

    Args:
        filename (str): A local ``.pt`` written by Ultralytics (a released
            ``rtdetr-l.pt`` / ``rtdetr-x.pt`` or a training ``best.pt`` /
            ``last.pt``).

    Returns:
        dict: ``model``: the flat fp32 state dict of the EMA model where the
        file has one (as Ultralytics itself loads it), else of ``'model'``,
        named as ``RTDETRDetectionModel.state_dict()``; ``meta``: the
        pickled class, the BatchNorm epsilons (``bn_eps``; a warning is
        logged unless they are :data:`ULTRALYTICS_BN_EPS`), Ultralytics
        version, date and epoch, and the class names as ``dataset_meta``
        where the model has them.

    Raises:
        RuntimeError: The file is not a ``torch.save`` zip archive, pickles
            a global outside what :class:`UltralyticsUnpickler` resolves
            (named in the message), or holds no pickled model.
    """
    filename = str(filename)
    try:
        with zipfile.ZipFile(filename) as archive:
            pickles = [n for n in archive.namelist()
                       if re.fullmatch(r'[^/]+/data\.pkl', n)]
            if len(pickles) != 1:
                raise pickle.UnpicklingError(
                    f'expected one <archive>/data.pkl record, found '
                    f'{pickles[:5]}')
            prefix = pickles[0][:-len('data.pkl')]
            byteorder = 'little'
            if f'{prefix}byteorder' in archive.namelist():
                byteorder = archive.read(f'{prefix}byteorder').decode()
            unpickler = UltralyticsUnpickler(
                io.BytesIO(archive.read(pickles[0])), archive, prefix,
                byteorder)
            checkpoint = unpickler.load()
    except zipfile.BadZipFile as err:
        raise RuntimeError(
            f'cannot read Ultralytics checkpoint {filename}: not a zip '
            f'archive written by torch.save ({err}); is the file '
            f'complete?') from err
    except pickle.UnpicklingError as err:
        raise RuntimeError(
            f'cannot read Ultralytics checkpoint {filename}: {err}') from err
    except Exception as err:  # noqa: BLE001 (a malformed pickle stream)
        raise RuntimeError(
            f'cannot read Ultralytics checkpoint {filename} '
            f'({type(err).__name__}: {err}): is it a complete file written '
            f'by torch.save?') from err
    if not isinstance(checkpoint, dict):
        raise RuntimeError(f'Ultralytics checkpoint {filename} holds a '
                           f'{type(checkpoint).__name__}, not a dict')
    use_ema = _is_module(checkpoint.get('ema'))
    model = checkpoint['ema'] if use_ema else checkpoint.get('model')
    if not _is_module(model):
        raise RuntimeError(
            f'Ultralytics checkpoint {filename} holds no pickled model under '
            f'"ema" or "model" (top-level keys: {list(checkpoint)[:10]})')
    try:
        weights = module_state_dict(model)
    except TypeError as err:
        raise RuntimeError(
            f'Ultralytics checkpoint {filename}: {err}') from err
    bn_eps = _batchnorm_eps(model)
    if any(eps != ULTRALYTICS_BN_EPS for eps in bn_eps):
        print_log(
            f'Ultralytics checkpoint {filename}: BatchNorm eps {bn_eps}, not '
            f'the {ULTRALYTICS_BN_EPS} of every Ultralytics model that the '
            f'conversion to rtdetr_zoo compensates; its outputs will differ '
            f'slightly from the original model\'s', logger='current',
            level=logging.WARNING)
    meta = dict(
        ultralytics=dict(
            model_class=model.pickled_name, from_ema=use_ema, bn_eps=bn_eps,
            **{key: checkpoint.get(key)
               for key in ('version', 'date', 'epoch')
               if isinstance(checkpoint.get(key), (str, int))}))
    classes = _class_names(model)
    if classes:
        meta['dataset_meta'] = dict(classes=classes)
    return dict(model=weights, meta=meta)


def refused_ultralytics_file(filename: str,
                             error: Exception) -> Optional[str]:
    """The local file to read with :func:`read_ultralytics_checkpoint` when
    torch's weights-only unpickler refused ``filename`` (a local path, or an
    ``http(s)://`` URL, then its downloaded copy in torch hub's cache) for
    an ``ultralytics.*`` global (``error``), else ``None``."""
    if not re.search(r'GLOBAL ultralytics\.', str(error)):
        return None
    if filename.startswith(('http://', 'https://')):
        return hub_cache_path(filename)
    if '://' in filename:
        return None
    return osp.expanduser(filename)
