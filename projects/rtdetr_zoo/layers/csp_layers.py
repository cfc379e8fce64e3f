"""RT-DETR's cross-stage-partial block of RepVGG blocks (CCFM fusion block).

RT-DETR (Zhao et al., "DETRs Beat YOLOs on Real-time Object Detection",
CVPR 2024) fuses neighbouring pyramid levels with ``CSPRepLayer``: two 1x1
branches, one of which runs through ``num_blocks`` RepVGG blocks (Ding et al.,
"RepVGG", CVPR 2021); their sum is projected to ``out_channels``. Ultralytics
calls the same block ``RepC3``.
"""
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, build_activation_layer
from mmengine.model import BaseModule

from mmdet.registry import MODELS


def conv_bn(in_channels, out_channels, kernel_size, stride=1, groups=1,
            act_cfg=None):
    """Conv (no bias, 'same' padding) + BN (+ activation) as an mmcv ConvModule."""
    return ConvModule(
        in_channels, out_channels, kernel_size, stride=stride,
        padding=(kernel_size - 1) // 2, groups=groups, bias=False,
        norm_cfg=dict(type='BN'), act_cfg=act_cfg)


@MODELS.register_module()
class RepVGGBlock(BaseModule):
    """RepVGG block: ``act(BN(conv3x3(x)) + BN(conv1x1(x)))``.

    At deploy time :meth:`switch_to_deploy` folds both branches into a single
    3x3 convolution with bias (exactly the same function in eval mode).

    Args:
        in_channels (int): Input channels C_in.
        out_channels (int): Output channels C_out.
        act_cfg (dict): Activation after the sum. Defaults to SiLU.

    Shapes: (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(self, in_channels, out_channels, act_cfg=dict(type='SiLU'),
                 init_cfg=None):
        super().__init__(init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv1 = conv_bn(in_channels, out_channels, 3)
        self.conv2 = conv_bn(in_channels, out_channels, 1)
        self.act = build_activation_layer(act_cfg) if act_cfg else nn.Identity()
        self.deploy = False

    def forward(self, x):
        if self.deploy:
            return self.act(self.fused_conv(x))
        return self.act(self.conv1(x) + self.conv2(x))

    @staticmethod
    def _fold_bn(conv_module):
        """Return (weight, bias) of a conv followed by its eval-mode BN."""
        bn = conv_module.bn
        std = (bn.running_var + bn.eps).sqrt()
        weight = conv_module.conv.weight * (bn.weight / std).reshape(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * bn.weight / std
        return weight, bias

    @torch.no_grad()
    def switch_to_deploy(self):
        """Fuse the 3x3 and 1x1 branches into one 3x3 conv (idempotent)."""
        if self.deploy:
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
            ``out_channels`` set to the hidden width. Defaults to RepVGG.

    Shapes: (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(self, in_channels, out_channels, num_blocks=3, expansion=1.0,
                 act_cfg=dict(type='SiLU'), block_cfg=None, init_cfg=None):
        super().__init__(init_cfg)
        hidden = int(out_channels * expansion)
        self.conv1 = conv_bn(in_channels, hidden, 1, act_cfg=act_cfg)
        self.conv2 = conv_bn(in_channels, hidden, 1, act_cfg=act_cfg)
        if block_cfg is None:
            block_cfg = dict(type='RepVGGBlock', act_cfg=act_cfg)
        self.bottlenecks = nn.Sequential(*[
            MODELS.build(dict(block_cfg, in_channels=hidden, out_channels=hidden))
            for _ in range(num_blocks)
        ])
        self.conv3 = (
            conv_bn(hidden, out_channels, 1, act_cfg=act_cfg)
            if hidden != out_channels else nn.Identity())

    def forward(self, x):
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))
