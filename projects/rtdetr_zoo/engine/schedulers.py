"""DEIM's flat-cosine learning-rate schedule as an mmengine scheduler."""
import math
from typing import List, Optional, Union

from mmdet.registry import PARAM_SCHEDULERS
from mmengine.optim import BaseOptimWrapper
from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from torch.optim import Optimizer


def flat_cosine_value(step: int, base: float, minimum: float,
                      warmup_iters: int, flat_iter: int, no_aug_iter: int,
                      total_iter: int) -> float:
    """The value at iteration ``step`` of DEIM's schedule (the official
    ``flat_cosine_schedule``, ``engine/optim/lr_scheduler.py``): quadratic
    warm-up ``base * (step / warmup_iters)^2`` up to ``warmup_iters``,
    ``base`` up to ``flat_iter``, ``minimum`` from ``total_iter -
    no_aug_iter`` on, and a half cosine from ``base`` to ``minimum`` in
    between."""
    if step <= warmup_iters:
        return base * (step / warmup_iters)**2 if warmup_iters else base
    if step <= flat_iter:
        return base
    if step >= total_iter - no_aug_iter:
        return minimum
    progress = (step - flat_iter) / (total_iter - flat_iter - no_aug_iter)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return minimum + (base - minimum) * cosine


@PARAM_SCHEDULERS.register_module()
class FlatCosineLR(LRSchedulerMixin, _ParamScheduler):
    """The flat-cosine learning rate of DEIM (Huang et al., CVPR 2025; the
    official ``FlatCosineLRScheduler``), per iteration and per parameter
    group (each from its own initial lr): a quadratic warm-up over
    ``warmup_iters`` iterations, flat until ``flat_epoch``, a cosine down
    to ``lr_gamma`` x lr when the last ``no_aug_epoch`` epochs start, then
    constant (:func:`flat_cosine_value`). The epochs become iterations as
    the official computes them, ``int(iterations_per_epoch * epochs)``.

    mmengine's stock schedulers cannot chain into it exactly: mmdet's
    ``QuadraticWarmupLR`` gives ``base * ((t + 1) / T)^2`` at iteration t,
    and a ``CosineAnnealingLR`` of an epoch-based config that ends where
    the constant phase starts never sets its minimum (its last step is the
    iteration before its ``end``, which cannot be given one iteration later
    in epochs). Iteration t uses the value at t; the official code sets the
    value after each optimizer step, so its iteration t >= 1 uses the value
    at t - 1 and its very first one the full lr.

    Config (epochs, converted to iterations by mmengine)::

        param_scheduler = [dict(
            type='FlatCosineLR', warmup_iters=2000, flat_epoch=64,
            no_aug_epoch=3, lr_gamma=0.5, begin=0, end=120, by_epoch=True,
            convert_to_iter_based=True)]

    Args:
        optimizer (Optimizer or BaseOptimWrapper): The optimizer.
        warmup_iters (int): Warm-up iterations. Defaults to 2000.
        flat_epoch (float): Last epoch of the flat phase.
        no_aug_epoch (float): Epochs at the minimum at the end.
        lr_gamma (float): Minimum / initial lr. Defaults to 0.5.
        begin (int): First iteration (epoch in the config).
        end (int): Total iterations (epochs in the config); the schedule
            ends there.
        by_epoch (bool): False once converted; an epoch-based config needs
            ``convert_to_iter_based=True``.
        epoch_length (int, optional): Iterations per epoch, set by the
            conversion.
        last_step (int): Resume from this step. Defaults to -1.
        verbose (bool): Print every update. Defaults to False.
    """

    def __init__(self, optimizer: Union[Optimizer, BaseOptimWrapper],
                 flat_epoch: float, no_aug_epoch: float,
                 warmup_iters: int = 2000, lr_gamma: float = 0.5,
                 begin: int = 0, end: int = INF, by_epoch: bool = False,
                 epoch_length: Optional[int] = None, last_step: int = -1,
                 verbose: bool = False) -> None:
        if by_epoch or epoch_length is None:
            raise ValueError(
                'FlatCosineLR sets the lr per iteration: configure it in '
                'epochs with by_epoch=True and convert_to_iter_based=True')
        if end == INF:
            raise ValueError('FlatCosineLR needs `end`, the total epochs')
        if warmup_iters < 0:
            raise ValueError(f'FlatCosineLR: warmup_iters must be >= 0, got '
                             f'{warmup_iters}')
        if not 0 <= lr_gamma <= 1:
            raise ValueError(f'FlatCosineLR: lr_gamma must be in [0, 1], got '
                             f'{lr_gamma}')
        total_epochs = (end - begin) / epoch_length
        if not 0 <= flat_epoch <= total_epochs - no_aug_epoch or \
                no_aug_epoch < 0:
            raise ValueError(
                f'FlatCosineLR needs 0 <= flat_epoch <= end - no_aug_epoch '
                f'(epochs), got flat_epoch={flat_epoch}, no_aug_epoch='
                f'{no_aug_epoch}, end={total_epochs:g}')
        self.warmup_iters = warmup_iters
        self.lr_gamma = lr_gamma
        self.total_iter = end - begin
        self.flat_iter = int(epoch_length * flat_epoch)
        self.no_aug_iter = int(epoch_length * no_aug_epoch)
        super().__init__(optimizer, begin=begin, end=end,
                         last_step=last_step, by_epoch=False,
                         verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls, *args, begin: int = 0, end: int = INF,
                              by_epoch: bool = True,
                              epoch_length: Optional[int] = None,
                              **kwargs) -> 'FlatCosineLR':
        """The iteration-based scheduler of an epoch-based config."""
        if not by_epoch or not epoch_length:
            raise ValueError('FlatCosineLR: convert_to_iter_based needs '
                             'by_epoch=True and the epoch length')
        return cls(*args, begin=int(begin * epoch_length),
                   end=int(end * epoch_length) if end != INF else end,
                   by_epoch=False, epoch_length=epoch_length, **kwargs)

    def _get_value(self) -> List[float]:
        return [
            flat_cosine_value(self.last_step, base, base * self.lr_gamma,
                              self.warmup_iters, self.flat_iter,
                              self.no_aug_iter, self.total_iter)
            for base in self.base_values
        ]
