"""BiFPN weighted feature fusion (Tan et al., "EfficientDet: Scalable and
Efficient Object Detection", CVPR 2020, Sec. 3.3)."""
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmdet.registry import MODELS

WEIGHT_ACTS = ('relu', 'swish')


@MODELS.register_module()
class WeightedFusion(nn.Module):
    """Fuse ``num_inputs`` same-shaped maps with one learnable scalar each.

    ``weight_act='relu'`` (default) is EfficientDet's fast normalised fusion

        out = sum_i relu(w_i) * x_i / (eps + sum_j relu(w_j))

    whose effective weights are non-negative and sum to at most 1 whatever
    the raw parameters become during training.

    ``weight_act='swish'`` reproduces the normalisation of the
    Ultralytics-based RT-DETR MobileNetV4 + BiFPN blog post this fusion comes
    from, ``out = sum_i w_i * x_i / (eps + sum_j swish(w_j))``: the raw
    weights are used in the numerator, so they are not constrained to be
    non-negative.

    Args:
        num_inputs (int): Number of fused maps (2 or 3 in a BiFPN).
        weight_act (str): ``'relu'`` or ``'swish'``.
        eps (float): Stabiliser of the normalisation. Defaults to 1e-4.

    Shapes: a sequence of ``num_inputs`` tensors (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self,
                 num_inputs: int,
                 weight_act: str = 'relu',
                 eps: float = 1e-4) -> None:
        super().__init__()
        if num_inputs < 1:
            raise ValueError(
                f'WeightedFusion num_inputs must be >= 1, got {num_inputs}')
        if weight_act not in WEIGHT_ACTS:
            raise ValueError(f'WeightedFusion weight_act must be one of '
                             f'{WEIGHT_ACTS}, got {weight_act!r}')
        self.num_inputs = num_inputs
        self.weight_act = weight_act
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_inputs))

    def normalized_weights(self) -> Tensor:
        """The effective fusion coefficients, shape (num_inputs, )."""
        if self.weight_act == 'relu':
            weight = F.relu(self.weight)
            return weight / (weight.sum() + self.eps)
        return self.weight / (F.silu(self.weight).sum() + self.eps)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """``num_inputs`` tensors (B, C, H, W) -> (B, C, H, W)."""
        if len(inputs) != self.num_inputs:
            raise ValueError(
                f'WeightedFusion built for {self.num_inputs} inputs got '
                f'{len(inputs)}')
        if not torch.jit.is_tracing() and any(
                x.shape != inputs[0].shape for x in inputs[1:]):
            raise ValueError(
                f'WeightedFusion inputs must share one shape, got '
                f'{[tuple(x.shape) for x in inputs]}')
        weights = self.normalized_weights()
        out = weights[0] * inputs[0]
        for weight, x in zip(weights[1:], inputs[1:]):
            out = out + weight * x
        return out

    def extra_repr(self) -> str:
        return (f'num_inputs={self.num_inputs}, weight_act={self.weight_act!r}'
                f', eps={self.eps}')
