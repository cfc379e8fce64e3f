"""Optimizer wrappers: skip (or stop on) non-finite losses/gradients, and
mixed precision on a CPU (bfloat16)."""
import logging
from contextlib import contextmanager
from typing import Iterator, Optional, Union

import torch
from mmengine.device import (is_cuda_available, is_mlu_available,
                             is_musa_available, is_npu_available)
from mmengine.dist import all_reduce, get_world_size
from mmengine.logging import MessageHub, print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import Tensor, nn

from mmdet.registry import OPTIM_WRAPPERS


class NonFiniteGuardMixin:
    """Skips the optimizer step of an iteration with a non-finite loss.

    The check runs at :meth:`step` (after the backward pass, so that every
    process of a distributed run takes part in the gradient all-reduce): the
    step is skipped when the loss, or any gradient, is NaN or infinite. With
    several processes they agree through one all-reduce, so the replicas stay
    identical. A skipped step leaves the parameters and the optimizer state
    untouched and, with ``restore_buffers``, also puts back the model's
    buffers (BatchNorm running statistics) as they were before the forward
    pass. Under AMP with an active ``GradScaler`` only the loss is checked:
    gradient overflow is the scaler's business (it skips and lowers the
    scale).

    Args:
        on_non_finite (str): ``'skip'`` (log a warning and go on) or
            ``'stop'`` (raise ``FloatingPointError``; checkpoints and logs
            written so far are kept).
        max_consecutive_skips (int): Raise ``FloatingPointError`` once this
            many steps in a row were skipped (the run has diverged).
        restore_buffers (bool): Restore the buffers on a skipped step.
    """

    def __init__(self,
                 *args,
                 on_non_finite: str = 'skip',
                 max_consecutive_skips: int = 20,
                 restore_buffers: bool = True,
                 **kwargs) -> None:
        if on_non_finite not in ('skip', 'stop'):
            raise ValueError("on_non_finite must be 'skip' or 'stop', got "
                             f'{on_non_finite!r}')
        if max_consecutive_skips < 1:
            raise ValueError('max_consecutive_skips must be >= 1, got '
                             f'{max_consecutive_skips}')
        super().__init__(*args, **kwargs)
        self.on_non_finite = on_non_finite
        self.max_consecutive_skips = max_consecutive_skips
        self.restore_buffers = restore_buffers
        self.num_skipped = 0
        self.last_step_skipped = False
        self._consecutive = 0
        self._bad_loss = None
        self._buffers = None

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """The wrapper's context; first keeps a copy of the model's buffers
        (with ``restore_buffers``) for a skipped step to put back."""
        if self.restore_buffers and self._buffers is None:
            self._buffers = [(b, b.detach().clone()) for b in model.buffers()]
        with super().optim_context(model):
            yield

    def backward(self, loss: Tensor, **kwargs) -> None:
        """Backward of ``loss``, noting whether it is finite."""
        if self._bad_loss is None and not bool(torch.isfinite(loss).all()):
            self._bad_loss = loss.detach().float().sum().item()
        super().backward(loss, **kwargs)

    def _scaler_active(self):
        scaler = getattr(self, 'loss_scaler', None)
        return scaler is not None and scaler.is_enabled()

    def _num_bad_grads(self):
        grads = [p.grad for group in self.optimizer.param_groups
                 for p in group['params'] if p.grad is not None]
        if not grads:
            return 0
        norms = torch.stack(torch._foreach_norm(grads))
        return int((~torch.isfinite(norms)).sum())

    def step(self, **kwargs) -> None:
        """The optimizer step, or a skip when the loss or a gradient (on
        any process) is not finite."""
        bad_loss, self._bad_loss = self._bad_loss, None
        bad_grads = 0 if self._scaler_active() else self._num_bad_grads()
        bad = bad_loss is not None or bad_grads > 0
        if get_world_size() > 1:
            flag = torch.tensor([float(bad)], device=self._device())
            all_reduce(flag, op='sum')
            bad = bool(flag.item() > 0)
        buffers, self._buffers = self._buffers, None
        if not bad:
            self._consecutive = 0
            self.last_step_skipped = False
            super().step(**kwargs)
            return
        self.num_skipped += 1
        self._consecutive += 1
        self.last_step_skipped = True
        if buffers is not None:
            with torch.no_grad():
                for buf, saved in buffers:
                    buf.copy_(saved)
        if bad_loss is not None:
            what = f'loss ({bad_loss})'
        elif bad_grads:
            what = f'gradients in {bad_grads} parameter tensors'
        else:
            what = 'loss or gradients on another process'
        it = MessageHub.get_current_instance().get_info('iter', -1) + 1
        msg = (f'Iter {it}: non-finite {what}; the optimizer step is '
               f'skipped ({self.num_skipped} skipped so far)')
        if self.on_non_finite == 'stop':
            raise FloatingPointError(
                msg.replace('is skipped', 'is not taken') + ' and training '
                "stops (on_non_finite='stop')")
        if self._consecutive >= self.max_consecutive_skips:
            raise FloatingPointError(
                f'{msg}: {self._consecutive} steps in a row were skipped, '
                'training has diverged (lower the learning rate, check the '
                'data, or raise max_consecutive_skips)')
        print_log(msg, logger='current', level=logging.WARNING)

    def _device(self):
        for group in self.optimizer.param_groups:
            for p in group['params']:
                return p.device
        return torch.device('cpu')


@OPTIM_WRAPPERS.register_module()
class NonFiniteGuardOptimWrapper(NonFiniteGuardMixin, OptimWrapper):
    """:class:`~mmengine.optim.OptimWrapper` with :class:`NonFiniteGuardMixin`.

    ``tools/train.py --amp`` swaps it for
    :class:`NonFiniteGuardAmpOptimWrapper`.
    """


def accelerator_available() -> bool:
    """Whether mmengine's ``AmpOptimWrapper`` has a device to run on (CUDA,
    NPU, MLU or MUSA)."""
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


@OPTIM_WRAPPERS.register_module()
class CPUCapableAmpOptimWrapper(AmpOptimWrapper):
    """mmengine's :class:`~mmengine.optim.AmpOptimWrapper`, also on a CPU.

    With an accelerator it is mmengine's wrapper (in bfloat16,
    ``dtype='bfloat16'``, without loss scaling). Without one
    (where mmengine's constructor refuses to start) it trains under
    ``torch.autocast('cpu', dtype=torch.bfloat16)`` through the same
    ``optim_context`` (mmengine's ``autocast``), with a disabled gradient
    scaler: bfloat16 has float32's exponent range, so gradients do not
    underflow and need no loss scaling. ``tools/train.py --amp`` selects it
    (or :class:`NonFiniteGuardAmpOptimWrapper`).

    Args:
        loss_scale: As mmengine's (used with an accelerator only).
        dtype (str | torch.dtype, optional): On a CPU only ``None`` or
            bfloat16 (torch's only CPU autocast type).

    Raises:
        ValueError: ``dtype`` float16 on a CPU.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Optional[Union[str, torch.dtype]] = None,
                 use_fsdp: bool = False,
                 **kwargs) -> None:
        if accelerator_available():
            super().__init__(loss_scale=loss_scale, dtype=dtype,
                             use_fsdp=use_fsdp, **kwargs)
            if self.cast_dtype == torch.bfloat16:
                # No loss scaling in bfloat16 (float32's exponent range):
                # a scaler would only add its per-step overflow check, a
                # device-to-host read.
                self.loss_scaler = torch.amp.GradScaler(enabled=False)
            return
        if dtype not in (None, 'bfloat16', torch.bfloat16):
            raise ValueError(
                f'AMP on a CPU runs in bfloat16 (the only dtype of torch\'s '
                f'CPU autocast); got optim_wrapper.dtype={dtype!r}')
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self.cast_dtype = torch.bfloat16
        print_log(
            'AMP on the CPU: bfloat16 autocast (torch.autocast("cpu")), no '
            'loss scaling', logger='current')


@OPTIM_WRAPPERS.register_module()
class NonFiniteGuardAmpOptimWrapper(NonFiniteGuardMixin,
                                    CPUCapableAmpOptimWrapper):
    """:class:`CPUCapableAmpOptimWrapper` (mmengine's AMP wrapper, bfloat16
    on a CPU) with :class:`NonFiniteGuardMixin` (``dtype='float16'`` or
    ``'bfloat16'`` with an accelerator)."""
