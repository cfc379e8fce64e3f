"""A real short training run on the raccoon data: loss goes down, checkpoints
are written and read with torch's weights-only unpickler, resume (through
rtdetr_zoo's RTDETRRunner) continues from the saved iteration, and
tools/test.py prints COCO mAP on the val split."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from rtdetr_zoo.engine import read_checkpoint

from .test_checkpoint import globals_beyond_torch_defaults
from .utils import REPO_ROOT, SMALL_DETECTOR

CONFIG = osp.join('tests', 'configs', 'raccoon_short.py')


def _run(args, timeout=900):
    # torch.load keeps its weights-only default: the runner and tools must
    # read mmengine checkpoints without the opt-out variable.
    env = {k: v for k, v in os.environ.items()
           if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}
    proc = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def _scalars(work_dir):
    """Logged training records of every run in ``work_dir``, in order."""
    records = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            records.append([json.loads(line) for line in f
                            if '"loss"' in line])
    return records


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('raccoon_run'))
    first = _run(['tools/train.py', CONFIG, '--work-dir', work_dir,
                  '--cfg-options', 'train_cfg.max_iters=20'])
    second = _run(['tools/train.py', CONFIG, '--work-dir', work_dir,
                   '--resume'])
    return work_dir, first, second


def test_checkpoints_written_and_read_weights_only(trained):
    """read_checkpoint loads an mmengine checkpoint with torch's default
    (weights-only) unpickler: the message hub, numpy random state and meta
    included. The file pickles nothing beyond torch's own allow-list
    (RTDETRRunner encodes those objects; tests/test_mmdet_apis.py)."""
    work_dir = trained[0]
    for it in (10, 20, 30):
        assert osp.isfile(osp.join(work_dir, f'iter_{it}.pth'))
    path = osp.join(work_dir, 'iter_30.pth')
    ckpt = read_checkpoint(path)
    assert ckpt['meta']['iter'] == 30
    assert 'optimizer' in ckpt and 'ema_state_dict' in ckpt
    buffer = ckpt['message_hub']['log_scalars']['train/loss']
    assert len(buffer.data[0]) > 0
    assert ckpt['random_state']['numpy'][1].dtype.name == 'uint32'
    assert globals_beyond_torch_defaults(path) == []


def test_resume_continues_from_saved_iteration(trained):
    work_dir, _, second = trained
    assert 'resumed' in second.lower()
    runs = _scalars(work_dir)
    assert len(runs) == 2
    assert [r['iter'] for r in runs[0]] == list(range(1, 21))
    assert [r['iter'] for r in runs[1]] == list(range(21, 31))


def test_loss_goes_down(trained):
    runs = _scalars(trained[0])
    losses = [r['loss'] for run in runs for r in run]
    assert len(losses) == 30
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first, (first, last, losses)


def test_tools_test_prints_coco_map(trained):
    work_dir = trained[0]
    out = _run(['tools/test.py', CONFIG, osp.join(work_dir, 'iter_30.pth'),
                '--work-dir', osp.join(work_dir, 'test')])
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95' in out
    assert 'coco/bbox_mAP:' in out


def test_tools_test_bf16(trained):
    work_dir = trained[0]
    out = _run(['tools/test.py', CONFIG, osp.join(work_dir, 'iter_30.pth'),
                '--bf16', '--work-dir', osp.join(work_dir, 'test_bf16')])
    assert 'testing under bfloat16 autocast' in out
    assert 'coco/bbox_mAP:' in out


def test_tools_train_amp_on_a_cpu_trains_in_bf16(tmp_path):
    out = _run(['tools/train.py', CONFIG, '--amp', '--work-dir',
                str(tmp_path), '--cfg-options', 'train_cfg.max_iters=2'])
    assert 'AMP on the CPU: bfloat16 autocast' in out
    records = _scalars(str(tmp_path))[0]
    assert [r['iter'] for r in records] == [1, 2]
    assert all(torch.isfinite(torch.tensor([r['loss'] for r in records])))


def test_mim_train_runs_the_plugin(tmp_path):
    """`mim train mmdet CONFIG` finds mmdet's train script and our modules."""
    proc = subprocess.run(
        ['mim', 'train', 'mmdet', CONFIG, '--work-dir', str(tmp_path),
         '--cfg-options', 'train_cfg.max_iters=1'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert osp.isfile(tmp_path / 'iter_1.pth')


def _coco_layout(root, num_images):
    """The first ``num_images`` raccoon images as a COCO 2017 folder
    (``annotations/instances_{train,val}2017.json``, ``train2017/``,
    ``val2017/``): converted by ``convert_voc_to_coco`` (a third for val),
    with the 80 COCO categories and the raccoons labelled 'bear'."""
    from mmdet.datasets import CocoDataset

    from rtdetr_zoo.datasets import convert_voc_to_coco
    raccoon = osp.join(REPO_ROOT, 'data', 'raccoon')
    voc = osp.join(root, 'voc')
    os.makedirs(osp.join(voc, 'annotations'))
    os.symlink(osp.join(raccoon, 'images'), osp.join(voc, 'images'))
    for i in range(1, num_images + 1):
        os.symlink(osp.join(raccoon, 'annotations', f'raccoon-{i}.xml'),
                   osp.join(voc, 'annotations', f'raccoon-{i}.xml'))
    names = CocoDataset.METAINFO['classes']
    categories = [dict(id=i + 1, name=n) for i, n in enumerate(names)]
    splits = convert_voc_to_coco(voc, osp.join(root, 'voc_coco'),
                                 val_ratio=1 / 3)
    os.makedirs(osp.join(root, 'annotations'))
    for split, path in splits.items():
        with open(path) as f:
            coco = json.load(f)
        coco['categories'] = categories
        for ann in coco['annotations']:
            ann['category_id'] = names.index('bear') + 1
        with open(osp.join(root, 'annotations',
                           f'instances_{split}2017.json'), 'w') as f:
            json.dump(coco, f)
        os.symlink(osp.join(raccoon, 'images'),
                   osp.join(root, f'{split}2017'))


def coco_folder_options(root, train_dataset='train_dataloader.dataset'):
    """``--cfg-options`` that point a COCO config at the folder ``root``
    (its training dataset at ``train_dataset``) with batches of 2, no
    worker processes, no pretrained backbone and the tests' small decoder
    (30 queries, :data:`~tests.utils.SMALL_DETECTOR`), logging every
    iteration."""
    options = [f'{train_dataset}.data_root={root}/']
    options += [f'{loader}.dataset.data_root={root}/'
                for loader in ('val_dataloader', 'test_dataloader')]
    options += [f'{evaluator}.ann_file={root}/annotations/'
                'instances_val2017.json'
                for evaluator in ('val_evaluator', 'test_evaluator')]
    options += [f'{loader}.{key}'
                for loader in ('train_dataloader', 'val_dataloader')
                for key in ('num_workers=0', 'persistent_workers=False')]
    options += [f'{key}={value}' for key, value in SMALL_DETECTOR.items()]
    return options + ['train_dataloader.batch_size=2',
                      'model.backbone.init_cfg=None',
                      'default_hooks.logger.interval=1']


def test_rtdetrv2_coco_config_trains_through_tools_train(tmp_path):
    """`python tools/train.py configs/rtdetrv2_r18vd_120e_coco.py` on a COCO
    folder: the official recipe's pieces run (the official optimizer
    groups, the COCO augmentations, which StopAugmentationHook removes at
    the stop epoch, here moved to the second of two epochs), the model is
    evaluated with CocoMetric and a checkpoint is written. Only the sizes
    change: 4 training images in batches of 2, no pretrained backbone."""
    root = str(tmp_path / 'coco')
    _coco_layout(root, num_images=6)
    work_dir = str(tmp_path / 'work')
    options = coco_folder_options(root) + [
        'train_cfg.max_epochs=2', 'custom_hooks.1.stop_epoch=1']
    log = _run(['tools/train.py', 'configs/rtdetrv2_r18vd_120e_coco.py',
                '--work-dir', work_dir, '--cfg-options', *options])
    assert 'optimizer parameter groups (tensors):' in log
    assert ("epoch 2: augmentation policy 'stopped' (start_epoch=0, "
            "flat_epoch=1, stop_epoch=1): without "
            "['PhotoMetricDistortion', 'Expand', 'RandomApply']") in log
    assert 'Epoch(train) [2][2/2]' in log
    assert log.count('coco/bbox_mAP:') == 2
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
