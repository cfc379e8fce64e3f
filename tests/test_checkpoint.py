"""rtdetr_zoo.engine.checkpoint: reading checkpoints without a process-wide
switch to full pickle loading, unwrapping their weights; the runner that
uses it; importing the package changes nothing in the process.

The read of a real training checkpoint (message hub, numpy random state)
and ``--resume`` through the runner are in tests/test_training.py.
"""
import json
import os
import os.path as osp
import pickle
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.registry import RUNNERS

from rtdetr_zoo.engine import (CHECKPOINT_SAFE_GLOBALS, RTDETRRunner,
                               extract_state_dict, read_checkpoint)

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
json.dump([before, state()], sys.stdout)
"""


def test_import_changes_nothing_in_the_process():
    """Importing rtdetr_zoo sets no environment variable (no process-wide
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD) and registers no global torch.load
    allowance."""
    env = {k: v for k, v in os.environ.items()
           if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}
    done = subprocess.run([sys.executable, '-c', PROCESS_SNAPSHOT],
                          cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = json.loads(done.stdout)
    assert after['env'] == before['env']
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in after['env']
    assert after['safe_globals'] == before['safe_globals']


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
    path = str(tmp_path / 'ckpt.pth')
    torch.save(mmengine_like_checkpoint(), path)
    ckpt = read_checkpoint(path)
    buffer = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    np.testing.assert_allclose(buffer.data[0], [1.5, 0.5])
    assert ckpt['random_state']['numpy'][1].dtype == np.uint32
    assert torch.equal(ckpt['state_dict']['w'], torch.arange(3.))
    # The allowance is scoped to the read: plain torch.load still refuses.
    with pytest.raises(pickle.UnpicklingError, match='numpy|HistoryBuffer'):
        torch.load(path)
    assert HistoryBuffer in CHECKPOINT_SAFE_GLOBALS

    unsafe = str(tmp_path / 'unsafe.pth')
    torch.save(dict(state_dict={}, obj=NotAllowed()), unsafe)
    with pytest.raises(RuntimeError, match=r'cannot read checkpoint .*'
                       r'unsafe\.pth: it pickles .*NotAllowed'):
        read_checkpoint(unsafe)


class NotAllowed:
    """A class that no checkpoint may unpickle."""


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
