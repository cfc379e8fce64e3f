"""rtdetr_zoo.engine.checkpoint: reading checkpoints without a process-wide
switch to full pickle loading, unwrapping their weights; the runner that
uses it; writing checkpoints that load weights-only as they are; what
importing the package registers in the process.

The read of a real training checkpoint (message hub, numpy random state)
and ``--resume`` through the runner are in tests/test_training.py, mmdet's
own APIs on such checkpoints in tests/test_mmdet_apis.py.
"""
import contextlib
import json
import logging
import os
import os.path as osp
import pickle
import re
import shutil
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub, MMLogger
from mmengine.registry import RUNNERS

from rtdetr_zoo.engine import (CHECKPOINT_SAFE_GLOBALS, ENCODED_TYPE_KEY,
                               RTDETRRunner, WeightsOnlyCheckpointHook,
                               decode_checkpoint_objects,
                               encode_checkpoint_objects, extract_state_dict,
                               read_checkpoint)
from rtdetr_zoo.engine.hooks import get_random_state

from .utils import REPO_ROOT, load_config

# The dependencies are imported first: cv2 (through mmcv) prepends its own
# folder to LD_LIBRARY_PATH, which is opencv's doing, not ours.
PROCESS_SNAPSHOT = """
import json, os, sys
import cv2, mmcv.ops, mmdet.models, mmengine.runner, mmpretrain.models, torch
def state():
    return dict(env=dict(os.environ),
                safe_globals=sorted(map(str,
                                        torch.serialization.get_safe_globals())))
before = state()
import rtdetr_zoo
from rtdetr_zoo.engine import CHECKPOINT_SAFE_GLOBALS
json.dump([before, state(), sorted(map(str, CHECKPOINT_SAFE_GLOBALS))],
          sys.stdout)
"""


def test_import_registers_exactly_the_checkpoint_safe_globals():
    """Importing rtdetr_zoo sets no environment variable (no process-wide
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD) and adds exactly
    CHECKPOINT_SAFE_GLOBALS to torch's weights-only allow-list."""
    env = {k: v for k, v in os.environ.items()
           if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}
    done = subprocess.run([sys.executable, '-c', PROCESS_SNAPSHOT],
                          cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    before, after, expected = json.loads(done.stdout)
    assert after['env'] == before['env']
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in after['env']
    added = sorted(set(after['safe_globals']) - set(before['safe_globals']))
    assert added == expected
    assert set(before['safe_globals']) <= set(after['safe_globals'])


@contextlib.contextmanager
def without_registered_safe_globals():
    """Inside it torch's safe-globals list is empty, as in a process that
    never imported rtdetr_zoo (CHECKPOINT_SAFE_GLOBALS not registered)."""
    registered = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        yield
    finally:
        torch.serialization.add_safe_globals(registered)


def globals_beyond_torch_defaults(path):
    """The globals pickled in the (zip) checkpoint at ``path`` that torch's
    own weights-only allow-list lacks, registered ones included."""
    with without_registered_safe_globals():
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)


def mmengine_like_checkpoint():
    """What mmengine 0.10.7's Runner pickles besides tensors: a message hub
    of HistoryBuffers (numpy arrays), numpy scalars, the numpy random
    state."""
    hub = MessageHub('test_checkpoint_hub')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', np.float32(0.5))
    hub.update_info('iter', np.int64(3))
    return dict(
        meta=dict(iter=3, seed=np.int64(0), dataset_meta=dict(
            classes=('raccoon', ), palette=[(220, 20, 60)])),
        state_dict=OrderedDict(w=torch.arange(3.)),
        message_hub=hub.state_dict(),
        random_state=dict(numpy=np.random.RandomState(0).get_state()))


def test_read_checkpoint_allows_mmengine_types_only(tmp_path):
    """A checkpoint as mmengine 0.10.7 pickles it (raw HistoryBuffer and
    numpy objects) is read by read_checkpoint and, since importing
    rtdetr_zoo registered CHECKPOINT_SAFE_GLOBALS, by plain torch.load; the
    registration outlives read_checkpoint's own allowance."""
    path = str(tmp_path / 'ckpt.pth')
    torch.save(mmengine_like_checkpoint(), path)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in (
        globals_beyond_torch_defaults(path))
    ckpt = read_checkpoint(path)
    buffer = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    np.testing.assert_allclose(buffer.data[0], [1.5, 0.5])
    assert ckpt['random_state']['numpy'][1].dtype == np.uint32
    assert torch.equal(ckpt['state_dict']['w'], torch.arange(3.))
    assert set(CHECKPOINT_SAFE_GLOBALS) <= set(
        torch.serialization.get_safe_globals())
    plain = torch.load(path)
    assert isinstance(plain['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    assert HistoryBuffer in CHECKPOINT_SAFE_GLOBALS

    unsafe = str(tmp_path / 'unsafe.pth')
    torch.save(dict(state_dict={}, obj=NotAllowed()), unsafe)
    with pytest.raises(RuntimeError, match=r'cannot read checkpoint .*'
                       r'unsafe\.pth: it pickles .*NotAllowed'):
        read_checkpoint(unsafe)


class NotAllowed:
    """A class that no checkpoint may unpickle."""


class HistoryBufferAttribute:
    """Pickles as ``getattr(HistoryBuffer, name)``, as a HistoryBuffer's
    statistics methods are pickled."""

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return getattr, (HistoryBuffer, self.name)


@pytest.mark.parametrize('owner_name', [(HistoryBuffer, '__init__'),
                                        (HistoryBuffer, '__class__'),
                                        (np.ndarray, 'tofile')])
def test_registered_getattr_resolves_only_history_buffer_statistics(
        tmp_path, owner_name):
    """The process-wide ``builtins.getattr`` of CHECKPOINT_SAFE_GLOBALS
    serves the HistoryBuffer statistics methods and nothing else."""
    path = str(tmp_path / 'getattr.pth')
    torch.save(dict(stats=HistoryBufferAttribute('mean')), path)
    assert torch.load(path)['stats'] is HistoryBuffer.mean

    class OtherAttribute:
        def __reduce__(self):
            return getattr, owner_name

    torch.save(dict(attribute=OtherAttribute()), path)
    with pytest.raises(pickle.UnpicklingError,
                       match=rf"getattr\(.*, '{owner_name[1]}'\) refused: "
                       'only HistoryBuffer statistics'):
        torch.load(path)


class Unencodable:
    """An object that encode_checkpoint_objects leaves as it is."""


def _runner_like_checkpoint():
    """What mmengine 0.10.7's Runner and our RandomStateHook put in a
    checkpoint besides tensors, with numpy values of several dtypes; the
    live message hub it was taken from."""
    hub = MessageHub('test_encode_hub')
    for value in (1.5, np.float32(0.25).item(), 3):
        hub.update_scalar('train/loss', value)
    hub.update_scalar('train/lr', 1e-4)
    hub.update_info('eta', np.float64(12.5))
    hub.update_info('best_score', np.float32(0.125))
    hub.update_info('keep_ckpt_ids', [np.int64(10), 20])
    state_dict = OrderedDict(w=torch.arange(3.))
    state_dict._metadata = OrderedDict({'': {'version': 2}})
    checkpoint = dict(
        meta=dict(iter=3, seed=0, dataset_meta=dict(classes=('raccoon', ))),
        state_dict=state_dict,
        message_hub=hub.state_dict(),
        random_state=dict(get_random_state(),
                          batch_augment_sizes=[(352, 352), None]),
        extra=dict(flag=np.bool_(True), cell=np.array(7, dtype=np.int16),
                   big_endian=np.arange(4, dtype='>f4').reshape(2, 2),
                   halves=np.array([0.5, -2.0], dtype=np.float16)))
    return checkpoint, hub


def _assert_same(got, expected, where='checkpoint'):
    """Equal values of the same types (numpy dtypes and shapes included)."""
    assert type(got) is type(expected), (where, type(got), type(expected))
    if isinstance(expected, dict):
        assert list(got) == list(expected), where
        for key in expected:
            _assert_same(got[key], expected[key], f'{where}.{key}')
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected)):
            _assert_same(a, b, f'{where}[{i}]')
    elif isinstance(expected, HistoryBuffer):
        assert got.max_length == expected.max_length, where
        for a, b in zip(got.data, expected.data):
            _assert_same(a, b, where)
    elif isinstance(expected, np.ndarray):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected, err_msg=where)
    elif isinstance(expected, torch.Tensor):
        assert torch.equal(got, expected), where
    else:
        assert got == expected, where
        if isinstance(expected, np.generic):
            assert got.dtype == expected.dtype, where


def test_saved_checkpoint_loads_weights_only_and_decodes_exactly(tmp_path):
    """WeightsOnlyCheckpointHook (which RTDETRRunner adds) makes a checkpoint
    that needs no allowance at all; read_checkpoint gives back the same
    HistoryBuffers, numpy values and random states; the live message hub
    and the objects the runner put in the checkpoint are left as they
    were; what cannot be encoded is named in a warning."""
    checkpoint, hub = _runner_like_checkpoint()
    original = dict(checkpoint)
    hub_state = checkpoint['message_hub']
    checkpoint['unencodable'] = [Unencodable()]
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        WeightsOnlyCheckpointHook().before_save_checkpoint(None, checkpoint)
    finally:
        logger.removeHandler(handler)
    warnings = [r.getMessage() for r in records
                if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert 'checkpoint.unencodable[0] (tests.test_checkpoint.Unencodable)' \
        in warnings[0]
    del checkpoint['unencodable']
    # Not modified in place: the message hub state the runner built still
    # holds HistoryBuffers, and the state dict of tensors is not copied.
    assert isinstance(hub_state['log_scalars']['train/loss'], HistoryBuffer)
    assert checkpoint['message_hub'] is not hub_state
    assert checkpoint['state_dict'] is original['state_dict']
    assert checkpoint['meta'] is original['meta']
    encoded_buffer = checkpoint['message_hub']['log_scalars']['train/loss']
    assert encoded_buffer[ENCODED_TYPE_KEY] == 'mmengine.HistoryBuffer'
    _assert_same(hub.state_dict(), hub_state)

    path = str(tmp_path / 'encoded.pth')
    torch.save(checkpoint, path)
    assert globals_beyond_torch_defaults(path) == []
    loaded = read_checkpoint(path)
    _assert_same(loaded, original)
    assert loaded['state_dict']._metadata == {'': {'version': 2}}

    restored = MessageHub('test_encode_hub_restored')
    restored.load_state_dict(loaded['message_hub'])
    assert restored.get_scalar('train/loss').mean() == pytest.approx(
        hub.get_scalar('train/loss').mean())
    assert restored.get_info('eta') == 12.5


def test_encode_decode_leave_plain_checkpoints_alone():
    checkpoint = dict(meta=dict(iter=1), state_dict=OrderedDict(
        w=torch.zeros(2)), param_schedulers=[dict(last_epoch=3)],
        size=torch.Size([2, 3]), dtype=torch.float16)
    encoded, unconverted = encode_checkpoint_objects(checkpoint)
    assert encoded is checkpoint and unconverted == []
    assert decode_checkpoint_objects(checkpoint) is checkpoint


def test_malformed_encoded_objects_name_the_file_and_entry(tmp_path):
    bogus = str(tmp_path / 'bogus.pth')
    torch.save(dict(meta={}, extra=dict(x={ENCODED_TYPE_KEY: 'numpy.bogus'})),
               bogus)
    with pytest.raises(ValueError, match=r'checkpoint .*bogus\.pth: '
                       r"checkpoint\.extra\.x has the unknown encoded type "
                       r"'numpy\.bogus'"):
        read_checkpoint(bogus)
    broken = str(tmp_path / 'broken.pth')
    torch.save(dict(meta={}, eta={ENCODED_TYPE_KEY: 'numpy.generic',
                                  'value': 1.0}), broken)
    with pytest.raises(ValueError, match=r'checkpoint .*broken\.pth: '
                       r'checkpoint\.eta is a malformed encoded '
                       r"numpy\.generic \(KeyError: 'dtype'\)"):
        read_checkpoint(broken)


def test_read_checkpoint_errors_name_the_file(tmp_path):
    missing = str(tmp_path / 'missing.pth')
    with pytest.raises(FileNotFoundError,
                       match=f'checkpoint file not found: {missing}'):
        read_checkpoint(missing)

    full = str(tmp_path / 'full.pth')
    torch.save(dict(state_dict={'w': torch.rand(1000)}), full)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(open(full, 'rb').read()[:2000])
    with pytest.raises(RuntimeError,
                       match=r'cannot read checkpoint .*truncated\.pth'):
        read_checkpoint(str(truncated))
    text = tmp_path / 'text.pth'
    text.write_text('not a checkpoint')
    with pytest.raises(RuntimeError, match=r'cannot read checkpoint .*text'):
        read_checkpoint(str(text))

    url = 'http://127.0.0.1:9/rtdetr_zoo_missing.pth'
    with pytest.raises(RuntimeError, match=r'cannot download checkpoint '
                       r'http://127\.0\.0\.1:9/rtdetr_zoo_missing\.pth .*'
                       r'pass its local path'):
        read_checkpoint(url)


def test_extract_state_dict_layouts():
    w = torch.zeros(2)
    b = torch.ones(2)
    flat = OrderedDict([('backbone.w', w), ('neck.b', b)])
    layouts = [
        flat,
        dict(meta={}, state_dict=flat, optimizer={}),
        dict(model=flat),
        dict(state_dict_ema=flat),
        dict(ema=dict(module=flat, updates=3), model=dict(other=b)),
        dict(state_dict={'module.' + k: v for k, v in flat.items()}),
    ]
    for layout in layouts:
        state = extract_state_dict(layout)
        assert isinstance(state, OrderedDict)
        assert list(state) == ['backbone.w', 'neck.b'], layout.keys()
    # state_dict wins over state_dict_ema (timm's raw weights).
    both = dict(state_dict=flat, state_dict_ema={'x': b})
    assert list(extract_state_dict(both)) == ['backbone.w', 'neck.b']
    for prefix in ('backbone', 'backbone.'):
        state = extract_state_dict(dict(state_dict=flat), prefix=prefix)
        assert list(state) == ['w'] and state['w'] is w


def test_extract_state_dict_errors_name_the_source():
    flat = {'backbone.w': torch.zeros(1)}
    with pytest.raises(KeyError, match=r"no key of checkpoint ckpt\.pth "
                       r"starts with prefix 'head\.'"):
        extract_state_dict(flat, prefix='head', source='ckpt.pth')
    with pytest.raises(TypeError, match=r'checkpoint a\.pth has no state '
                       r"dict .*\['meta', 'epoch'\]"):
        extract_state_dict(dict(meta={}, epoch=3), source='a.pth')
    with pytest.raises(TypeError, match='holds a list'):
        extract_state_dict([torch.zeros(1)], source='b.pth')


def test_configs_select_the_runner():
    assert RUNNERS.get('RTDETRRunner') is RTDETRRunner
    for name in ('rtdetr_r18vd_coco', 'rtdetr_r18vd_raccoon',
                 osp.join(REPO_ROOT, 'tests', 'configs', 'raccoon_short.py'),
                 osp.join(REPO_ROOT, 'tests', 'configs', 'robust_short.py')):
        assert load_config(name).runner_type == 'RTDETRRunner', name


@pytest.fixture
def fake_downloads(tmp_path, monkeypatch):
    """``http(s)://`` downloads served from local files: returns a dict
    ``url -> local file`` to fill; torch hub's cache is in ``tmp_path``."""
    served = {}

    def download(url, dst, progress=True):
        shutil.copyfile(served[url], dst)

    monkeypatch.setattr(torch.hub, 'download_url_to_file', download)
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    return served


def test_url_checkpoint_is_read_weights_only_and_cached(tmp_path,
                                                        fake_downloads):
    """mmengine's own http loader unpickles downloads with
    ``weights_only=False``; ours refuses a pickled payload from a URL and
    keeps an allowed download in torch hub's cache."""
    marker = tmp_path / 'pwned'

    class Payload:
        def __reduce__(self):
            return os.system, (f'touch {marker}', )

    url = 'https://example.com/releases/unsafe.pth'
    fake_downloads[url] = str(tmp_path / 'unsafe.pth')
    torch.save(dict(state_dict={}, payload=Payload()), fake_downloads[url])
    with pytest.raises(RuntimeError, match=rf'cannot read checkpoint '
                       rf'{re.escape(url)}: it pickles .*system'):
        read_checkpoint(url)
    assert not marker.exists()

    url = 'https://example.com/releases/weights.pth'
    fake_downloads[url] = str(tmp_path / 'weights.pth')
    torch.save(dict(state_dict={'w': torch.ones(2)}), fake_downloads[url])
    assert torch.equal(read_checkpoint(url)['state_dict']['w'],
                       torch.ones(2))
    cached = tmp_path / 'hub' / 'checkpoints' / 'weights.pth'
    assert cached.is_file()
    del fake_downloads[url]  # a second read uses the cached file
    assert torch.equal(read_checkpoint(url)['state_dict']['w'],
                       torch.ones(2))
