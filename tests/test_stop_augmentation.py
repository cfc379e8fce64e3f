"""RT-DETRv2's stop epoch (StopAugmentationHook): from the configured epoch
on, the training pipeline runs without the strong augmentations and the
multi-scale batch resize stops."""
from types import SimpleNamespace

import pytest
import torch
from mmengine.dataset import Compose
from mmengine.logging import MMLogger

from rtdetr_zoo.engine import StopAugmentationHook

from .utils import build_detector_from_config

PIPELINE = [
    dict(type='PhotoMetricDistortion'),
    dict(type='Expand', mean=[0, 0, 0], to_rgb=False, ratio_range=(1, 4)),
    dict(type='RandomApply', prob=0.8,
         transforms=[dict(type='MinIoURandomCrop')]),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=(64, 64), keep_ratio=False),
]


class _Dataset(torch.utils.data.Dataset):
    def __init__(self):
        self.pipeline = Compose(PIPELINE)

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return index


def _runner(epoch):
    model = build_detector_from_config('rtdetr_r18vd_raccoon')
    loader = torch.utils.data.DataLoader(_Dataset(), num_workers=0)
    return SimpleNamespace(epoch=epoch, train_dataloader=loader,
                           model=model, logger=MMLogger.get_current_instance())


def _types(runner):
    return [type(t).__name__
            for t in runner.train_dataloader.dataset.pipeline.transforms]


def test_augmentations_run_until_the_stop_epoch_and_stop_from_it():
    hook = StopAugmentationHook(stop_epoch=3)
    runner = _runner(epoch=2)
    hook.before_train_epoch(runner)
    assert _types(runner) == ['PhotoMetricDistortion', 'Expand',
                              'RandomApply', 'RandomFlip', 'Resize']
    assert runner.model.data_preprocessor.batch_augments is not None
    runner.epoch = 3
    hook.before_train_epoch(runner)
    assert _types(runner) == ['RandomFlip', 'Resize']
    assert runner.model.data_preprocessor.batch_augments is None


def test_a_resumed_run_past_the_stop_epoch_switches_at_once():
    runner = _runner(epoch=10)
    hook = StopAugmentationHook(stop_epoch=3, batch_augments=False,
                                transforms=['PhotoMetricDistortion'])
    hook.before_train_epoch(runner)
    assert _types(runner) == ['Expand', 'RandomApply', 'RandomFlip',
                              'Resize']
    assert runner.model.data_preprocessor.batch_augments is not None


def test_a_dataset_without_a_pipeline_is_named():
    runner = _runner(epoch=5)
    runner.train_dataloader = torch.utils.data.DataLoader(list(range(2)))
    with pytest.raises(TypeError, match='training dataset \\(list\\) has '
                       'no `pipeline`'):
        StopAugmentationHook(stop_epoch=1).before_train_epoch(runner)
