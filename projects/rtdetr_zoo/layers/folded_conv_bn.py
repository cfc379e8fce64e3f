"""Conv + eval-mode BatchNorm folded once, not on every call."""
from typing import Tuple

import torch
from mmcv.cnn.bricks.conv_module import efficient_conv_bn_eval_forward
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class FoldedConvBNForward:
    """A ``ConvModule.efficient_conv_bn_eval_forward`` that folds the
    BatchNorm into the conv once and reuses the result.

    mmcv's "efficient conv-BN eval" (Huang et al., "Tune-Mode ConvBN Blocks
    For Efficient Transfer Learning", 2023) folds the frozen BatchNorm into
    the conv weights on every call: five small operations per conv, and the
    gradient reaches the conv weights through them. Where no gradient can
    flow (inference, or a frozen conv and BatchNorm), this forward keeps the
    folded weight and bias and runs a single convolution, folding again
    only when one of the six tensors was replaced or modified in place
    (its storage or its version counter changed: ``load_state_dict``, an
    optimizer step, ``.to()``). Where a gradient is needed it is mmcv's
    forward.

    One instance per ``ConvModule`` (it holds that module's folded
    tensors); :meth:`clear` drops them.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Drop the folded weight and bias (the next call folds again)."""
        self._key = None
        self._weight = self._bias = None

    def __call__(self, bn: _BatchNorm, conv: nn.Conv2d, x: Tensor) -> Tensor:
        """``conv`` then ``bn`` (eval mode) on x: (B, C_in, H, W) ->
        (B, C_out, H_out, W_out), as ``conv`` computes them."""
        tensors = (conv.weight, conv.bias, bn.weight, bn.bias,
                   bn.running_mean, bn.running_var)
        if torch.is_grad_enabled() and any(
                t is not None and t.requires_grad for t in tensors):
            return efficient_conv_bn_eval_forward(bn, conv, x)
        key = tuple(None if t is None else (t.data_ptr(), t._version, t.dtype)
                    for t in tensors)
        if key != self._key:
            with torch.no_grad():
                self._weight, self._bias = fold_conv_bn(conv, bn)
            self._key = key
        return conv._conv_forward(x, self._weight, self._bias)


def fold_conv_bn(conv: nn.Conv2d, bn: _BatchNorm) -> Tuple[Tensor, Tensor]:
    """The weight and bias of ``conv`` followed by ``bn`` (eval mode) as one
    conv, with mmcv's arithmetic."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = bn.weight * scale
    bias = -bn.running_mean if conv.bias is None else \
        conv.bias - bn.running_mean
    bias = scale * bias
    if bn.bias is not None:
        bias = bn.bias + bias
    weight = conv.weight * scale.view([-1] + [1] * (conv.weight.dim() - 1))
    return weight, bias
