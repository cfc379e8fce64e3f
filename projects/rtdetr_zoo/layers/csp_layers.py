"""RT-DETR's cross-stage-partial block of RepVGG blocks (CCFM fusion block).

RT-DETR (Zhao et al., "DETRs Beat YOLOs on Real-time Object Detection",
CVPR 2024) fuses neighbouring pyramid levels with ``CSPRepLayer``: two 1x1
branches, one of which runs through ``num_blocks`` RepVGG blocks (Ding et al.,
"RepVGG", CVPR 2021); their sum is projected to ``out_channels``. Ultralytics
calls the same block ``RepC3``.
"""
import inspect
import logging
from typing import Any, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, build_activation_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig


def build_registered(cfg: ConfigType, arg_name: str, hint: str = '',
                     **defaults: Any) -> nn.Module:
    """Build ``cfg`` (a dict with a ``type``) from mmdet's ``MODELS``.

    Each keyword of ``defaults`` is passed to the constructor when the
    registered class takes an argument of that name and ``cfg`` does not set
    it (e.g. the ``in_channels`` of an up-sampler, the ``norm_cfg`` of a
    bottleneck). ``arg_name`` (the config argument ``cfg`` came from) and
    ``hint`` complete the error of an unregistered type.
    """
    cfg = dict(cfg)
    layer_type = cfg.pop('type')
    layer_cls = MODELS.get(layer_type)
    if layer_cls is None:
        raise KeyError(
            f'{arg_name} type {layer_type!r} is not registered in mmdet '
            f'MODELS{hint} (is its module imported?)')
    params = inspect.signature(layer_cls).parameters
    for name, value in defaults.items():
        if name in params:
            cfg.setdefault(name, value)
    return layer_cls(**cfg)


def conv_bn(in_channels: int,
            out_channels: int,
            kernel_size: int,
            stride: int = 1,
            groups: int = 1,
            act_cfg: OptConfigType = None,
            norm_cfg: ConfigType = dict(type='BN')) -> ConvModule:
    """Conv (no bias, 'same' padding) + norm (+ activation) as a ConvModule.

    ``norm_cfg`` is any mmcv norm config (default BN; ``SyncBN``,
    ``dict(type='GN', num_groups=...)``...). The ConvModule names the norm
    after its type (``bn`` for BN and SyncBN, ``gn`` for GN), so the
    default keeps the state-dict keys ``conv.weight``/``bn.*``.

    Shapes: (B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride))
    for odd ``kernel_size``.
    """
    return ConvModule(
        in_channels, out_channels, kernel_size, stride=stride,
        padding=(kernel_size - 1) // 2, groups=groups, bias=False,
        norm_cfg=norm_cfg, act_cfg=act_cfg)


@MODELS.register_module()
class RepVGGBlock(BaseModule):
    """RepVGG block: ``act(norm(conv3x3(x)) + norm(conv1x1(x)))``.

    At deploy time :meth:`switch_to_deploy` folds both branches into a single
    3x3 convolution with bias (exactly the same function in eval mode). Only
    batch norms (BN, SyncBN) can be folded: their eval-mode statistics are
    constants, whereas e.g. GroupNorm normalises with statistics of each
    input, so a block with such a norm stays unfused.

    Args:
        in_channels (int): Input channels C_in.
        out_channels (int): Output channels C_out.
        act_cfg (dict): Activation after the sum. Defaults to SiLU.
        norm_cfg (dict): Norm of both branches. Defaults to BN.

    Shapes: (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 act_cfg: OptConfigType = dict(type='SiLU'),
                 norm_cfg: ConfigType = dict(type='BN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv1 = conv_bn(in_channels, out_channels, 3, norm_cfg=norm_cfg)
        self.conv2 = conv_bn(in_channels, out_channels, 1, norm_cfg=norm_cfg)
        self.act = (build_activation_layer(act_cfg)
                    if act_cfg else nn.Identity())
        self.deploy = False

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        if self.deploy:
            return self.act(self.fused_conv(x))
        return self.act(self.conv1(x) + self.conv2(x))

    @staticmethod
    def _fold_bn(conv_module: ConvModule) -> Tuple[Tensor, Tensor]:
        """Return (weight, bias) of a conv followed by its eval-mode BN."""
        bn = conv_module.norm
        std = (bn.running_var + bn.eps).sqrt()
        weight = conv_module.conv.weight * (
            bn.weight / std).reshape(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * bn.weight / std
        return weight, bias

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fuse the 3x3 and 1x1 branches into one 3x3 conv (idempotent).

        A block whose norm is not a batch norm cannot be fused; it is left
        unchanged (``deploy`` stays False) and a warning says why.
        """
        if self.deploy:
            return
        norm = self.conv1.norm
        if not isinstance(norm, _BatchNorm):
            print_log(
                f'RepVGGBlock.switch_to_deploy: not fused, its norm '
                f'{type(norm).__name__} normalises with per-input statistics '
                f'and cannot be folded into a conv (only BN/SyncBN can)',
                logger='current', level=logging.WARNING)
            return
        w3, b3 = self._fold_bn(self.conv1)
        w1, b1 = self._fold_bn(self.conv2)
        self.fused_conv = nn.Conv2d(
            self.in_channels, self.out_channels, 3, padding=1, bias=True)
        self.fused_conv.weight.copy_(w3 + nn.functional.pad(w1, [1, 1, 1, 1]))
        self.fused_conv.bias.copy_(b3 + b1)
        del self.conv1, self.conv2
        self.deploy = True


@MODELS.register_module()
class CSPRepLayer(BaseModule):
    """CSP block of RepVGG blocks (RT-DETR's CCFM fusion block, "RepC3").

    ``out = conv3(bottlenecks(conv1(x)) + conv2(x))`` where ``conv1``/``conv2``
    are 1x1 conv-BN-act to ``hidden = int(out_channels * expansion)`` channels
    and ``conv3`` is a 1x1 conv-BN-act to ``out_channels`` (identity when
    ``hidden == out_channels``).

    Args:
        in_channels (int): Input channels C_in.
        out_channels (int): Output channels C_out.
        num_blocks (int): Number of bottleneck blocks. Defaults to 3.
        expansion (float): Hidden width ratio. Defaults to 1.0.
        act_cfg (dict): Activation of every conv. Defaults to SiLU.
        block_cfg (dict, optional): Registered bottleneck type replacing
            :class:`RepVGGBlock`; it is built with ``in_channels`` and
            ``out_channels`` set to the hidden width, and with ``norm_cfg``
            when its constructor takes one and ``block_cfg`` does not set
            it. Defaults to RepVGG.
        norm_cfg (dict): Norm of every conv (and of the bottlenecks, see
            ``block_cfg``). Defaults to BN.

    Shapes: (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 num_blocks: int = 3,
                 expansion: float = 1.0,
                 act_cfg: OptConfigType = dict(type='SiLU'),
                 block_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        hidden = int(out_channels * expansion)
        self.conv1 = conv_bn(in_channels, hidden, 1, act_cfg=act_cfg,
                             norm_cfg=norm_cfg)
        self.conv2 = conv_bn(in_channels, hidden, 1, act_cfg=act_cfg,
                             norm_cfg=norm_cfg)
        if block_cfg is None:
            block_cfg = dict(type='RepVGGBlock', act_cfg=act_cfg)
        block_cfg = dict(block_cfg, in_channels=hidden, out_channels=hidden)
        self.bottlenecks = nn.Sequential(*[
            build_registered(block_cfg, 'block_cfg', norm_cfg=norm_cfg)
            for _ in range(num_blocks)])
        self.conv3 = (
            conv_bn(hidden, out_channels, 1, act_cfg=act_cfg,
                    norm_cfg=norm_cfg)
            if hidden != out_channels else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))
