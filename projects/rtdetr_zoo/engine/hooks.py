"""Hooks for robust training (start-up checks, non-finite loss reports and
random states saved with checkpoints for exact resumption) and the epoch
policy of the strong augmentations (RT-DETRv2's stop epoch, DEIM's
stages)."""
import logging
import math
import random
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from mmengine.dataset import Compose
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop, IterBasedTrainLoop, Runner

from mmdet.engine.hooks import PipelineSwitchHook
from mmdet.registry import HOOKS


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class DatasetCheckHook(Hook):
    """Checks before training that the model and the datasets agree.

    Raises ``ValueError`` when ``model.bbox_head.num_classes`` differs from
    the number of ``metainfo['classes']`` of the train (or val) dataset, or
    when the train and val datasets list different classes, with the value
    to set. (Category names and ids are checked when the dataset loads, see
    :class:`rtdetr_zoo.datasets.CheckedCocoDataset`.)
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner: Runner) -> None:
        """Compare the head's ``num_classes`` with the datasets' classes."""
        model = _unwrap(runner.model)
        head = getattr(model, 'bbox_head', None)
        num_classes = getattr(head, 'num_classes', None)
        loaders = [('train_dataloader', runner.train_dataloader)]
        if isinstance(runner._val_loop, BaseLoop):
            loaders.append(('val_dataloader', runner.val_loop.dataloader))
        seen = {}
        for name, loader in loaders:
            meta = getattr(loader.dataset, 'metainfo', None) or {}
            classes = meta.get('classes')
            if classes is None:
                continue
            classes = tuple(classes)
            if num_classes is not None and num_classes != len(classes):
                raise ValueError(
                    f'model.bbox_head.num_classes={num_classes} but the '
                    f'{name} dataset ({type(loader.dataset).__name__}) has '
                    f'{len(classes)} classes {classes[:8]}'
                    f"{' ...' if len(classes) > 8 else ''}: set "
                    f'model.bbox_head.num_classes={len(classes)}, or fix '
                    'metainfo.classes of the dataset')
            for other, other_classes in seen.items():
                if other_classes != classes:
                    raise ValueError(
                        f'the {other} dataset has classes {other_classes} but '
                        f'the {name} dataset has {classes}; give both the '
                        'same metainfo.classes')
            seen[name] = classes


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Names the loss terms that were NaN or infinite, and the iteration.

    Works with any optimizer wrapper; with
    :class:`~rtdetr_zoo.engine.NonFiniteGuardOptimWrapper` the message also
    says that the step was skipped, with a plain ``OptimWrapper`` it warns
    that the parameters were updated with the non-finite values.
    """

    priority = 'ABOVE_NORMAL'

    def after_train_iter(self,
                         runner: Runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Warn with the non-finite terms of ``outputs`` (the log vars)."""
        bad = {}
        for name, value in (outputs or {}).items():
            value = float(value.detach().float().sum()) if isinstance(
                value, torch.Tensor) else value
            if isinstance(value, float) and not math.isfinite(value):
                bad[name] = value
        if not bad:
            return
        terms = ', '.join(f'{k}={v}' for k, v in bad.items())
        if getattr(runner.optim_wrapper, 'last_step_skipped', False):
            action = 'the optimizer step was skipped'
        elif hasattr(runner.optim_wrapper, 'last_step_skipped'):
            action = 'the gradients were finite and the step was taken'
        else:
            action = ('the parameters were updated with them (use '
                      "optim_wrapper=dict(type='NonFiniteGuardOptimWrapper') "
                      'to skip such steps)')
        print_log(f'Iter {runner.iter + 1}: non-finite loss terms {terms}; '
                  f'{action}', logger='current', level=logging.WARNING)


def get_random_state() -> dict:
    """The Python, NumPy and torch (CPU and CUDA) random states."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict) -> None:
    """Restore a state returned by :func:`get_random_state`."""
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _resizing_augments(runner):
    """The batch augments that keep the input size they drew (mmdet's
    ``BatchSyncRandomResize``), in order."""
    preprocessor = getattr(_unwrap(runner.model), 'data_preprocessor', None)
    return [aug for aug in getattr(preprocessor, 'batch_augments', None) or []
            if hasattr(aug, '_input_size')]


class _RestoreAfterSkip:
    """Iterator proxy: after ``skip`` batches, restores the random state
    before the next batch is loaded, then puts the plain iterator back."""

    def __init__(self, loop, skip, state):
        self._loop = loop
        self._inner = loop.dataloader_iterator
        self._skip = skip
        self._state = state

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip > 0:
            self._skip -= 1
        else:
            set_random_state(self._state)
            self._loop.dataloader_iterator = self._inner
        return next(self._inner)

    def __getattr__(self, name):
        return getattr(self._inner, name)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Saves the random states in checkpoints and restores them on resume.

    mmengine resumes the weights, optimizer, schedulers, EMA and iteration
    counter but not the random generators, so the augmentations and the
    denoising noise after a resume differ from the uninterrupted run's; nor
    the input size that ``BatchSyncRandomResize`` drew at the saved iteration
    for the next one (the first iteration after a resume would use the
    pipeline's size). Both are saved under ``checkpoint['random_state']``. With
    this hook the losses after ``--resume`` match the uninterrupted run
    exactly (single process, deterministic ops). An ``IterBasedTrainLoop``
    first replays the data loader up to the saved iteration (which draws
    random numbers), so the state is restored right before the first new
    batch is loaded. Checkpoints are written by rank 0 only, so with several
    processes every rank continues from rank 0's state.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._pending = None

    def before_save_checkpoint(self, runner: Runner,
                               checkpoint: dict) -> None:
        """Store the random states under ``checkpoint['random_state']``."""
        checkpoint['random_state'] = dict(
            get_random_state(),
            batch_augment_sizes=[aug._input_size
                                 for aug in _resizing_augments(runner)])

    def after_load_checkpoint(self, runner: Runner,
                              checkpoint: dict) -> None:
        """Keep the saved states of a resumed checkpoint for
        :meth:`before_train`."""
        if getattr(runner, '_resume', False) and 'random_state' in checkpoint:
            self._pending = checkpoint['random_state']

    def before_train(self, runner: Runner) -> None:
        """Restore the kept states (after the loader replay of an
        iteration-based loop)."""
        state, self._pending = self._pending, None
        if state is None:
            return
        sizes = state.get('batch_augment_sizes', [])
        for aug, size in zip(_resizing_augments(runner), sizes):
            if size is not None:
                aug._input_size = size
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
            loop.dataloader_iterator = _RestoreAfterSkip(loop, loop.iter,
                                                         state)
        else:
            set_random_state(state)
        print_log('Random states restored from the checkpoint',
                  logger='current')


# The strong augmentations RT-DETRv2 stops near the end of training (the
# official policy's 'RandomPhotometricDistort', 'RandomZoomOut' and
# 'RandomIoUCrop', by their mmdet names).
STOPPED_AUGMENTATIONS = ('PhotoMetricDistortion', 'Expand', 'MinIoURandomCrop')
# DEIM's dense one-to-one augmentations, on only from start_epoch until
# flat_epoch: the mosaic (a transform) and the batch mixup (a batch augment
# of the data pre-processor).
MIX_TRANSFORMS = ('DEIMMosaic', )
MIX_BATCH_AUGMENTS = ('BatchRollMixup', )


@HOOKS.register_module()
class StopAugmentationHook(PipelineSwitchHook):
    """The epoch policy of the strong augmentations: RT-DETRv2's "stop
    epoch" (Lv et al., arXiv 2407.17140, bag of freebies) and DEIM's
    four stages ``[start_epoch, flat_epoch, stop_epoch]`` (Huang et al.,
    CVPR 2025; the official ``policy.epoch`` of
    ``engine/data/transforms/container.py`` and ``mixup_epochs`` of its
    collate function). Epochs are 0-based, as the official policies count
    them:

    - before ``start_epoch``: no strong transform (``transforms``), no
      mosaic (``mix_transforms``) and no mixup (``mix_batch_augments``);
      the other batch augments (the multi-scale resize) run;
    - from ``start_epoch`` until ``flat_epoch``: everything;
    - from ``flat_epoch`` until ``stop_epoch``: no mosaic and no mixup;
    - from ``stop_epoch`` on: none of them and, with ``batch_augments``, no
      batch augment at all (RT-DETRv2: 117 of 120 trains the last 3 epochs
      so).

    With the defaults ``start_epoch=0`` and ``flat_epoch=None``
    (= ``stop_epoch``) that is RT-DETRv2's single stop epoch. A transform
    is left out by type; a container (``RandomApply``,
    ``SkipAfterMosaic``) whose inner transforms are all left out goes too.
    Each stage's pipeline is the dataset's own with those transforms left
    out, so the hook needs no copy of the pipeline config; the training
    dataset is a dataset with a ``pipeline`` or mmdet's
    ``MultiImageMixDataset`` (whose pipeline holds the mosaic). The stage
    is chosen at every epoch start, so a resumed run gets its epoch's
    stage at once; a change of stage is logged and restarts persistent
    data-loader workers (as mmdet's ``PipelineSwitchHook``).

    Args:
        stop_epoch (int): First epoch without the augmentations.
        transforms (Sequence[str]): Strong transform types.
        batch_augments (bool): Also stop the batch augments at
            ``stop_epoch``.
        start_epoch (int): First epoch with the strong augmentations.
            Defaults to 0.
        flat_epoch (int, optional): First epoch without the mosaic and the
            mixup. Defaults to ``stop_epoch``.
        mix_transforms (Sequence[str]): Mosaic transform types.
        mix_batch_augments (Sequence[str]): Mixup batch augment types.
    """

    def __init__(self,
                 stop_epoch: int,
                 transforms: Sequence[str] = STOPPED_AUGMENTATIONS,
                 batch_augments: bool = True,
                 start_epoch: int = 0,
                 flat_epoch: Optional[int] = None,
                 mix_transforms: Sequence[str] = MIX_TRANSFORMS,
                 mix_batch_augments: Sequence[str] = MIX_BATCH_AUGMENTS
                 ) -> None:
        flat_epoch = stop_epoch if flat_epoch is None else flat_epoch
        if not 0 <= start_epoch <= flat_epoch <= stop_epoch:
            raise ValueError(
                f'StopAugmentationHook needs 0 <= start_epoch <= flat_epoch '
                f'<= stop_epoch, got start_epoch={start_epoch}, '
                f'flat_epoch={flat_epoch}, stop_epoch={stop_epoch}')
        super().__init__(switch_epoch=stop_epoch, switch_pipeline=None)
        self.start_epoch = start_epoch
        self.flat_epoch = flat_epoch
        self.transforms = tuple(transforms)
        self.mix_transforms = tuple(mix_transforms)
        self.mix_batch_augments = tuple(mix_batch_augments)
        self.batch_augments = batch_augments
        self._stage = None
        self._full_pipeline = None
        self._full_batch_augments = None

    def _stage_of(self, epoch: int) -> str:
        if epoch >= self.switch_epoch:
            return 'stopped'
        if epoch >= self.flat_epoch:
            return 'no mosaic or mixup'
        if epoch >= self.start_epoch:
            return 'all'
        return 'not started'

    def _left_out(self, stage: str) -> Tuple[Tuple[str, ...], bool, bool]:
        """Transform types, and whether the mixup / every batch augment is
        off, in ``stage``."""
        if stage == 'all':
            return (), False, False
        if stage == 'no mosaic or mixup':
            return self.mix_transforms, True, False
        return (self.transforms + self.mix_transforms, True,
                stage == 'stopped' and self.batch_augments)

    @classmethod
    def _stopped(cls, transform, types: Tuple[str, ...]) -> bool:
        inner = getattr(getattr(transform, 'transforms', None), 'transforms',
                        None)
        if type(transform).__name__ in ('RandomApply', 'SkipAfterMosaic') \
                and inner:
            return all(cls._stopped(t, types) for t in inner)
        return type(transform).__name__ in types

    def before_train_epoch(self, runner: Runner) -> None:
        """Set the pipeline and the batch augments of this epoch's stage."""
        loader = runner.train_dataloader
        if self._restart_dataloader:
            loader._DataLoader__initialized = True
            self._restart_dataloader = False
        stage = self._stage_of(runner.epoch)
        if stage == self._stage:
            return
        dataset = loader.dataset
        pipeline = getattr(dataset, 'pipeline', None)
        if pipeline is None:
            raise TypeError(
                f'StopAugmentationHook switches the training pipeline, '
                f'but the training dataset ({type(dataset).__name__}) '
                f'has no `pipeline`')
        preprocessor = _unwrap(runner.model).data_preprocessor
        if self._full_pipeline is None:
            self._full_pipeline = list(getattr(pipeline, 'transforms',
                                               pipeline))
            self._full_batch_augments = getattr(preprocessor,
                                                'batch_augments', None)
        types, no_mixup, no_batch_augments = self._left_out(stage)
        kept = [t for t in self._full_pipeline
                if not self._stopped(t, types)]
        removed = [type(t).__name__ for t in self._full_pipeline
                   if self._stopped(t, types)]
        if isinstance(pipeline, list):  # MultiImageMixDataset
            dataset.pipeline = kept
            dataset.pipeline_types = [type(t).__name__ for t in kept]
        else:
            dataset.pipeline = Compose(kept)
        augments = list(self._full_batch_augments or [])
        if no_batch_augments:
            augments = []
        elif no_mixup:
            augments = [a for a in augments
                        if type(a).__name__ not in self.mix_batch_augments]
        removed += [type(a).__name__ for a in self._full_batch_augments or []
                    if a not in augments]
        if self._full_batch_augments is not None:
            preprocessor.batch_augments = nn.ModuleList(augments) \
                if augments else None
        runner.logger.info(
            f'epoch {runner.epoch + 1}: augmentation policy {stage!r} '
            f'(start_epoch={self.start_epoch}, flat_epoch={self.flat_epoch}, '
            f'stop_epoch={self.switch_epoch}): without {removed or "none"}')
        if self._stage is not None and getattr(loader, 'persistent_workers',
                                               False):
            loader._DataLoader__initialized = False
            loader._iterator = None
            self._restart_dataloader = True
        self._stage = stage
        self._has_switched = stage == 'stopped'
