"""DEIM's training recipe (Huang et al., CVPR 2025): the flat-cosine
learning rate (``FlatCosineLR``), the epoch policy of the augmentations
(``StopAugmentationHook`` with ``start_epoch`` / ``flat_epoch``), and
``tools/train.py`` on a DEIM config."""
import math
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.dataset import Compose
from mmengine.logging import MMLogger
from mmengine.optim.scheduler import CosineAnnealingLR

from mmdet.datasets import MultiImageMixDataset
from mmdet.engine.schedulers import QuadraticWarmupLR
from rtdetr_zoo.engine import FlatCosineLR, StopAugmentationHook

from .test_training import _coco_layout, _run, coco_folder_options
from .utils import build_detector_from_config


def official_flat_cosine(total_iter, warmup_iter, flat_iter, no_aug_iter,
                         current_iter, init_lr, min_lr):
    """The official ``flat_cosine_schedule`` (DEIM,
    ``engine/optim/lr_scheduler.py``), written out."""
    if current_iter <= warmup_iter:
        return init_lr * (current_iter / float(warmup_iter)) ** 2
    elif warmup_iter < current_iter <= flat_iter:
        return init_lr
    elif current_iter >= total_iter - no_aug_iter:
        return min_lr
    cosine_decay = 0.5 * (1 + math.cos(math.pi * (current_iter - flat_iter) /
                                       (total_iter - flat_iter - no_aug_iter)))
    return min_lr + (init_lr - min_lr) * cosine_decay


def _optimizer(lrs=(2e-4, 2e-5)):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    return torch.optim.SGD([dict(params=[p], lr=lr)
                            for p, lr in zip(params, lrs)])


# 7 iterations per epoch, 10 epochs: warm-up 9 iterations, flat until epoch
# 4.5 (int(7 * 4.5) = 31), the last 2 epochs at the minimum.
EPOCH_LENGTH, EPOCHS, WARMUP, FLAT, NO_AUG = 7, 10, 9, 4.5, 2
SCHEDULE = dict(warmup_iters=WARMUP, flat_epoch=FLAT, no_aug_epoch=NO_AUG,
                lr_gamma=0.5, begin=0, end=EPOCHS, by_epoch=True)


def _scheduler(optimizer, **kwargs):
    return FlatCosineLR.build_iter_from_epoch(
        optimizer, epoch_length=EPOCH_LENGTH, **dict(SCHEDULE, **kwargs))


def _lrs(optimizer, scheduler, iterations):
    """The lr of every group used by each of ``iterations`` iterations."""
    used = []
    for _ in range(iterations):
        used.append([g['lr'] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return used


def test_flat_cosine_is_the_official_schedule_per_iteration_and_group():
    optimizer = _optimizer()
    scheduler = _scheduler(optimizer)
    total = EPOCH_LENGTH * EPOCHS
    used = _lrs(optimizer, scheduler, total + 5)
    for step, lrs in enumerate(used):
        for lr, base in zip(lrs, (2e-4, 2e-5)):
            expected = official_flat_cosine(
                total, WARMUP, int(EPOCH_LENGTH * FLAT),
                int(EPOCH_LENGTH * NO_AUG), step, base, 0.5 * base)
            assert lr == pytest.approx(expected, rel=1e-12, abs=1e-20), step
    # The phases: 0 at the start, the full lr after the warm-up, half of
    # it for the last 2 epochs, a cosine strictly in between.
    first = [lrs[0] for lrs in used]
    assert first[0] == 0 and first[WARMUP] == 2e-4 and first[31] == 2e-4
    assert first[total - 14:] == [1e-4] * 19
    assert all(a > b for a, b in zip(first[31:56], first[32:57]))


def test_flat_cosine_resumes_from_its_state():
    optimizer = _optimizer()
    scheduler = _scheduler(optimizer)
    expected = _lrs(optimizer, scheduler, 70)
    optimizer = _optimizer()
    scheduler = _scheduler(optimizer)
    _lrs(optimizer, scheduler, 40)
    state = scheduler.state_dict()
    resumed_optimizer = _optimizer()
    for group, old in zip(resumed_optimizer.param_groups,
                          optimizer.param_groups):
        group.update(lr=old['lr'], initial_lr=old['initial_lr'])
    resumed = _scheduler(resumed_optimizer, last_step=40 - 1)
    resumed.load_state_dict(state)
    assert _lrs(resumed_optimizer, resumed, 30) == expected[40:]


def test_stock_schedulers_cannot_express_it():
    """Why a scheduler of its own: mmdet's quadratic warm-up is one
    iteration ahead, and a cosine ending at the constant phase stops one
    iteration before its minimum."""
    optimizer = _optimizer((1.0, ))
    warmup = QuadraticWarmupLR(optimizer, begin=0, end=4, by_epoch=False)
    assert _lrs(optimizer, warmup, 2)[1][0] == pytest.approx((2 / 4) ** 2)
    assert official_flat_cosine(10, 4, 5, 1, 1, 1.0, 0.5) == (1 / 4) ** 2
    optimizer = _optimizer((1.0, ))
    cosine = CosineAnnealingLR(optimizer, eta_min_ratio=0.5, begin=0, end=5,
                               by_epoch=False)
    last = _lrs(optimizer, cosine, 8)
    assert last[-1][0] > 0.5 + 1e-3


def test_flat_cosine_bad_arguments_are_named():
    with pytest.raises(ValueError, match='convert_to_iter_based=True'):
        FlatCosineLR(_optimizer(), flat_epoch=2, no_aug_epoch=1, end=5,
                     by_epoch=True)
    with pytest.raises(ValueError, match='flat_epoch <= end - no_aug_epoch'):
        _scheduler(_optimizer(), flat_epoch=9)
    with pytest.raises(ValueError, match='lr_gamma must be in'):
        _scheduler(_optimizer(), lr_gamma=2)


class _Transform:
    def __call__(self, results):
        return results


def _transform(name):
    return type(name, (_Transform, ), {})()


class _Container(_Transform):
    """Keeps its inner transforms as ``.transforms.transforms``, as mmcv's
    ``RandomApply`` and ``SkipAfterMosaic``."""

    def __init__(self, *inner):
        self.transforms = SimpleNamespace(transforms=list(inner))


def _container(name, *inner):
    return type(name, (_Container, ), {})(*inner)


def _pipeline():
    return [_transform('DEIMMosaic'), _transform('PhotoMetricDistortion'),
            _container('SkipAfterMosaic', _transform('Expand'),
                       _container('RandomApply',
                                  _transform('MinIoURandomCrop'))),
            _transform('RandomFlip'), _transform('Resize')]


class _PlainDataset(torch.utils.data.Dataset):
    def __init__(self):
        self.pipeline = Compose(_pipeline())

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return index


def _mix_dataset():
    dataset = MultiImageMixDataset.__new__(MultiImageMixDataset)
    dataset.pipeline = _pipeline()
    dataset.pipeline_types = [type(t).__name__ for t in dataset.pipeline]
    return dataset


class _Augment(torch.nn.Module):
    pass


def _runner(dataset, epoch):
    model = build_detector_from_config('rtdetr_r18vd_raccoon')
    model.data_preprocessor.batch_augments = torch.nn.ModuleList([
        type('BatchRollMixup', (_Augment, ), {})(),
        type('BatchSyncRandomResize', (_Augment, ), {})()])
    loader = torch.utils.data.DataLoader(dataset, num_workers=0)
    return SimpleNamespace(epoch=epoch, train_dataloader=loader,
                           model=model, logger=MMLogger.get_current_instance())


def _active(runner):
    pipeline = runner.train_dataloader.dataset.pipeline
    transforms = [type(t).__name__
                  for t in getattr(pipeline, 'transforms', pipeline)]
    augments = runner.model.data_preprocessor.batch_augments
    return transforms, [type(a).__name__ for a in augments or []]


ALL = ['DEIMMosaic', 'PhotoMetricDistortion', 'SkipAfterMosaic',
       'RandomFlip', 'Resize']
# DEIM's stages with the policy [2, 4, 6].
STAGES = {
    0: (['RandomFlip', 'Resize'], ['BatchSyncRandomResize']),
    1: (['RandomFlip', 'Resize'], ['BatchSyncRandomResize']),
    2: (ALL, ['BatchRollMixup', 'BatchSyncRandomResize']),
    3: (ALL, ['BatchRollMixup', 'BatchSyncRandomResize']),
    4: (ALL[1:], ['BatchSyncRandomResize']),
    5: (ALL[1:], ['BatchSyncRandomResize']),
    6: (['RandomFlip', 'Resize'], []),
    9: (['RandomFlip', 'Resize'], []),
}


@pytest.mark.parametrize('make_dataset', [_PlainDataset, _mix_dataset])
def test_deim_policy_stages(make_dataset):
    """Nothing strong before start_epoch, mosaic and mixup until
    flat_epoch, the other strong augmentations until stop_epoch, the batch
    augments stopped at stop_epoch; for a plain dataset and for mmdet's
    MultiImageMixDataset (whose ``pipeline_types`` follow)."""
    hook = StopAugmentationHook(start_epoch=2, flat_epoch=4, stop_epoch=6)
    runner = _runner(make_dataset(), epoch=0)
    for epoch in sorted(STAGES):
        runner.epoch = epoch
        hook.before_train_epoch(runner)
        assert _active(runner) == STAGES[epoch], epoch
        dataset = runner.train_dataloader.dataset
        if isinstance(dataset, MultiImageMixDataset):
            assert dataset.pipeline_types == STAGES[epoch][0]


@pytest.mark.parametrize('epoch', sorted(STAGES))
def test_a_resumed_run_gets_its_stage_at_once(epoch):
    hook = StopAugmentationHook(start_epoch=2, flat_epoch=4, stop_epoch=6)
    runner = _runner(_mix_dataset(), epoch=epoch)
    hook.before_train_epoch(runner)
    assert _active(runner) == STAGES[epoch]


def test_rtdetrv2_stop_epoch_is_unchanged_by_the_mix_types():
    """Without start / flat epochs: everything (the mosaic and mixup too)
    until the stop epoch, as RT-DETRv2."""
    hook = StopAugmentationHook(stop_epoch=3)
    runner = _runner(_PlainDataset(), epoch=2)
    hook.before_train_epoch(runner)
    assert _active(runner) == (ALL, ['BatchRollMixup',
                                     'BatchSyncRandomResize'])
    runner.epoch = 3
    hook.before_train_epoch(runner)
    assert _active(runner) == (['RandomFlip', 'Resize'], [])


def test_policy_order_is_checked():
    with pytest.raises(ValueError, match='start_epoch <= flat_epoch <= '
                       'stop_epoch, got start_epoch=5, flat_epoch=4'):
        StopAugmentationHook(start_epoch=5, flat_epoch=4, stop_epoch=6)


def test_deim_coco_config_trains_through_tools_train(tmp_path):
    """`python tools/train.py configs/deim_rtdetrv2_r18vd_120e_coco.py` on a
    COCO folder, with the epoch policy moved to [1, 2, 3] of 4 epochs (and
    the flat-cosine schedule with it): the log shows nothing strong in
    epoch 1, mosaic and mixup on at the start epoch, off after the flat
    epoch, and the strong augmentations and the batch augments off at the
    stop epoch; the model is evaluated and a checkpoint written. 4 training
    images in batches of 2, no pretrained backbone."""
    root = str(tmp_path / 'coco')
    _coco_layout(root, num_images=6)
    work_dir = str(tmp_path / 'work')
    options = coco_folder_options(
        root, train_dataset='train_dataloader.dataset.dataset') + [
        'train_cfg.max_epochs=4', 'custom_hooks.1.start_epoch=1',
        'custom_hooks.1.flat_epoch=2', 'custom_hooks.1.stop_epoch=3',
        'param_scheduler.0.end=4', 'param_scheduler.0.flat_epoch=2',
        'param_scheduler.0.no_aug_epoch=1', 'param_scheduler.0.warmup_iters=2',
        # Multi-scale at 320-352 px instead of 480-800 (CPU time).
        'model.data_preprocessor.batch_augments.1.random_size_range=(320,352)']
    log = _run(['tools/train.py', 'configs/deim_rtdetrv2_r18vd_120e_coco.py',
                '--work-dir', work_dir, '--cfg-options', *options])
    policy = '(start_epoch=1, flat_epoch=2, stop_epoch=3): without'
    assert (f"epoch 1: augmentation policy 'not started' {policy} "
            "['DEIMMosaic', 'PhotoMetricDistortion', 'SkipAfterMosaic', "
            "'BatchRollMixup']") in log
    assert f"epoch 2: augmentation policy 'all' {policy} none" in log
    assert (f"epoch 3: augmentation policy 'no mosaic or mixup' {policy} "
            "['DEIMMosaic', 'BatchRollMixup']") in log
    assert (f"epoch 4: augmentation policy 'stopped' {policy} "
            "['DEIMMosaic', 'PhotoMetricDistortion', 'SkipAfterMosaic', "
            "'BatchRollMixup', 'BatchSyncRandomResize']") in log
    assert 'optimizer parameter groups (tensors):' in log
    assert 'Epoch(train) [4][2/2]' in log
    assert log.count('coco/bbox_mAP:') == 4
    assert osp.isfile(osp.join(work_dir, 'epoch_4.pth'))
