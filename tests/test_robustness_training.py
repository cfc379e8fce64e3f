"""Robust training, end to end on the raccoon data (docs/robustness.md):

* a run killed with SIGKILL mid-epoch resumes with ``--resume`` from its last
  checkpoint and reproduces the uninterrupted run's losses, weights,
  optimizer and EMA state;
* a bf16 AMP run on messy data (bad boxes, background-only images, a
  truncated image file) with one injected NaN loss skips that step, names the
  term and keeps training with finite losses;
* ``tools/dist_train.sh CONFIG 2`` (gloo, CPU) trains with a rank whose batch
  holds only background images and exits cleanly.
"""
import glob
import json
import os
import re
import os.path as osp
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import RUNNERS

from rtdetr_zoo.datasets import convert_voc_to_coco
from rtdetr_zoo.engine import read_checkpoint

from .utils import REPO_ROOT

CONFIG = osp.join('tests', 'configs', 'robust_short.py')
RACCOON = osp.join(REPO_ROOT, 'data', 'raccoon')


def _scalars(work_dir):
    """Per run (in order) the logged training records of ``work_dir``."""
    runs = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            runs.append([json.loads(line) for line in f if '"loss"' in line])
    return runs


def _train(work_dir, *args, timeout=400):
    # torch.load keeps its weights-only default in the run (and its resume).
    env = {k: v for k, v in os.environ.items()
           if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', CONFIG, '--work-dir', work_dir,
         *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def _ckpt(path):
    return read_checkpoint(path)


def _assert_close_tree(a, b, path=''):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _assert_close_tree(a[k], b[k], f'{path}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close_tree(x, y, f'{path}[{i}]')
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=path)
    else:
        assert a == b, path


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    ref_dir, run_dir = str(tmp_path / 'ref'), str(tmp_path / 'run')
    _train(ref_dir)
    # Same run with a far-away end, killed once iteration 2 is checkpointed
    # (the first pass over the 16 images takes 8 iterations).
    proc = subprocess.Popen(
        [sys.executable, 'tools/train.py', CONFIG, '--work-dir', run_dir,
         '--cfg-options', 'train_cfg.max_iters=100'], cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = osp.join(run_dir, 'last_checkpoint')
    deadline = time.time() + 300
    while not (osp.isfile(last) and open(last).read().endswith('iter_2.pth')):
        assert proc.poll() is None and time.time() < deadline, 'no iter_2'
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    killed_log = _scalars(run_dir)[0]
    assert 2 <= killed_log[-1]['iter'] < 8, 'not killed mid-epoch'

    out = _train(run_dir, '--resume', '--cfg-options', 'train_cfg.max_iters=4')
    assert 'resumed epoch: 0, iter: 2' in out
    assert 'Random states restored' in out
    ref, runs = _scalars(ref_dir)[0], _scalars(run_dir)
    assert len(runs) == 2
    for got, want in zip(killed_log[:2], ref[:2]):
        assert got['loss'] == pytest.approx(want['loss'], rel=1e-4)
    assert [r['iter'] for r in runs[1]] == [3, 4]
    for got, want in zip(runs[1], ref[2:]):
        for key in ('loss', 'loss_cls', 'loss_bbox', 'loss_iou', 'lr'):
            assert got[key] == pytest.approx(want[key], rel=1e-4), \
                (key, got, want)
    # Nothing written before the kill is lost; the end states agree.
    assert osp.isfile(osp.join(run_dir, 'iter_2.pth'))
    a, b = _ckpt(osp.join(ref_dir, 'iter_4.pth')), _ckpt(
        osp.join(run_dir, 'iter_4.pth'))
    assert b['meta']['iter'] == 4
    for key in ('state_dict', 'ema_state_dict', 'optimizer'):
        _assert_close_tree(a[key], b[key], key)


class _InjectNaN(Hook):
    """Makes ``loss_bbox`` NaN at iteration ``at`` (1-based) and records the
    parameters and buffers around it."""

    def __init__(self, at):
        self.at = at
        self.states = {}

    def _state(self, runner):
        model = runner.model
        return {k: v.detach().clone() for k, v in
                list(model.state_dict().items())}

    def before_train(self, runner):
        model = runner.model
        original = model.loss

        def loss(*args, **kwargs):
            losses = original(*args, **kwargs)
            if runner.iter + 1 == self.at:
                losses['loss_bbox'] = losses['loss_bbox'] * float('nan')
            return losses

        model.loss = loss

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.at:
            self.states['before'] = self._state(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.at:
            self.states['after'] = self._state(runner)


@pytest.fixture(scope='module')
def messy_root(tmp_path_factory):
    """Raccoon train images (links) + a truncated copy, with a json holding
    broken boxes and background-only images."""
    root = tmp_path_factory.mktemp('messy')
    paths = convert_voc_to_coco(RACCOON, str(root / 'coco'))
    coco = json.load(open(paths['train']))
    os.makedirs(root / 'images')
    for im in coco['images']:
        os.symlink(osp.join(RACCOON, 'images', im['file_name']),
                   root / 'images' / im['file_name'])
    images = coco['images'][:16]
    keep = {im['id'] for im in images}
    anns = [a for a in coco['annotations'] if a['image_id'] in keep]
    by_img = {}
    for a in anns:
        by_img.setdefault(a['image_id'], []).append(a)
    first = [by_img[im['id']][0] for im in images]
    first[0]['bbox'] = [-30.0, -20.0, first[0]['bbox'][2] + 30,
                        first[0]['bbox'][3] + 20]              # clipped
    first[2]['bbox'][2] = 0.0                                   # zero width
    first[3]['bbox'][3] = -5.0                                  # negative
    first[4]['bbox'] = [images[4]['width'] + 5.0, 0.0, 10.0, 10.0]  # outside
    # Images 1 and 3 (rank 1's first batch in the distributed test) become
    # background images: no annotation at all, or only a zero-area box.
    anns = [a for a in anns if a['image_id'] != images[1]['id']]
    for a in by_img[images[3]['id']]:
        a['bbox'][3] = -5.0
    src = osp.join(RACCOON, 'images', images[5]['file_name'])
    truncated = 'truncated_' + images[5]['file_name']
    data = open(src, 'rb').read()
    (root / 'images' / truncated).write_bytes(data[:len(data) // 3])
    images[5]['file_name'] = truncated
    json.dump(dict(images=images, annotations=anns,
                   categories=coco['categories']),
              open(root / 'coco' / 'messy.json', 'w'))
    return root, images


def test_amp_bf16_on_messy_data_skips_injected_nan(messy_root, tmp_path):
    # No GPU: NonFiniteGuardAmpOptimWrapper trains under bfloat16 autocast
    # on the CPU (mmengine's AMP wrapper would refuse to start).
    root, images = messy_root
    cfg = Config.fromfile(osp.join(REPO_ROOT, CONFIG))
    cfg.merge_from_dict({
        'work_dir': str(tmp_path),
        'train_cfg.max_iters': 4,
        'train_dataloader.dataset.data_root': str(root),
        'train_dataloader.dataset.ann_file': 'coco/messy.json',
        'optim_wrapper.type': 'NonFiniteGuardAmpOptimWrapper',
        'optim_wrapper.dtype': 'bfloat16',
        'default_hooks.checkpoint.interval': 100,
        # The visualizer is a process-wide singleton per name: a fresh name
        # makes this run log its scalars into its own work dir even when an
        # earlier test built a Runner in the same process.
        'visualizer.name': f'visualizer_{tmp_path.name}',
    })
    runner = RUNNERS.build(cfg)
    inject = _InjectNaN(at=2)
    runner.register_hook(inject)
    runner.train()

    log = open(glob.glob(str(tmp_path / '*' / '*.log'))[0]).read()
    assert images[5]['file_name'] in log
    assert 'JPEG file is truncated' in log
    assert 'skipping training sample' in log
    assert 'boxes clipped to the image' in log
    assert 'dropped: zero-area or negative width/height' in log
    assert 'dropped: entirely outside the image' in log
    assert 'train as background' in log
    assert 'Iter 2: non-finite loss (nan); the optimizer step is skipped' \
        in log
    assert 'Iter 2: non-finite loss terms loss=nan, loss_bbox=nan' in log

    records = _scalars(str(tmp_path))[0]
    assert [r['iter'] for r in records] == [1, 2, 3, 4]
    finite = [r['loss'] for r in records if r['iter'] != 2]
    assert all(torch.isfinite(torch.tensor(finite))), records
    assert runner.optim_wrapper.num_skipped == 1
    before, after = inject.states['before'], inject.states['after']
    for key in before:
        torch.testing.assert_close(after[key], before[key], msg=key)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_dist_train_two_ranks_with_background_only_batch(messy_root,
                                                         tmp_path):
    root, images = messy_root
    work_dir = str(tmp_path / 'dist')
    env = dict(os.environ, PORT=str(_free_port()), OMP_NUM_THREADS='1')
    # Without shuffling rank r reads images r, r+2, ...: rank 1's first batch
    # is images 1 and 3, both background-only.
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', work_dir,
         '--cfg-options', 'train_cfg.max_iters=2',
         'default_hooks.checkpoint.interval=2',
         f'train_dataloader.dataset.data_root={root}',
         'train_dataloader.dataset.ann_file=coco/messy.json',
         'train_dataloader.sampler.shuffle=False'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=420, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    out = proc.stdout + proc.stderr
    assert 'Iter(train) [2/2]' in out
    assert 'distributed training on the CPU with gloo, rank 0 of 2' in out
    ids = re.search(r'train as background \(image ids ([\d, ]+)\)', out)
    assert str(images[3]['id']) in ids.group(1).split(', ')
    records = _scalars(work_dir)[0]
    assert [r['iter'] for r in records] == [1, 2]
    assert all(torch.isfinite(torch.tensor([r['loss'] for r in records])))
    ckpt = _ckpt(osp.join(work_dir, 'iter_2.pth'))
    assert ckpt['meta']['iter'] == 2
    shutil.rmtree(work_dir)
