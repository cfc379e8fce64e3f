"""ResNet-vd backbone as used by RT-DETR (the official ``PResNet``).

He et al., "Bag of Tricks for Image Classification with Convolutional Neural
Networks" (CVPR 2019): variant "d" replaces the 7x7 stem by three 3x3 convs
and down-samples the shortcut with a 2x2 average pool before its 1x1 conv.
As in RT-DETR's ``PResNet``, the first block of every stage has a projection
shortcut (a 1x1 conv + BN even when the widths match, as in R18/R34's first
stage), which keeps official checkpoints loadable 1:1.
"""
from collections import OrderedDict
from typing import Dict, Sequence

import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig

from ..engine.official_converter import rename_official_key
from ..layers import conv_bn
from .base import BackboneContract

RELU = dict(type='ReLU')


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN (ResNet-18/34). (B, C_in, H, W) -> (B, C, H/s, W/s)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int,
                 shortcut: nn.Module, norm_cfg: ConfigType) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_channels, channels, 3, stride, act_cfg=RELU,
                             norm_cfg=norm_cfg)
        self.conv2 = conv_bn(channels, channels, 3, norm_cfg=norm_cfg)
        self.shortcut = shortcut
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, channels, ceil(H / s), ceil(W / s))."""
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 conv-BN (ResNet-50+), expansion 4."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int,
                 shortcut: nn.Module, norm_cfg: ConfigType) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_channels, channels, 1, act_cfg=RELU,
                             norm_cfg=norm_cfg)
        self.conv2 = conv_bn(channels, channels, 3, stride, act_cfg=RELU,
                             norm_cfg=norm_cfg)
        self.conv3 = conv_bn(channels, channels * self.expansion, 1,
                             norm_cfg=norm_cfg)
        self.shortcut = shortcut
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, 4 * channels, ceil(H / s), ceil(W / s))."""
        return self.act(
            self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


def projection_shortcut(in_channels: int, out_channels: int, stride: int,
                        norm_cfg: ConfigType) -> nn.Sequential:
    """vd shortcut: 2x2 avg-pool (when strided) then 1x1 conv + norm."""
    conv = conv_bn(in_channels, out_channels, 1, norm_cfg=norm_cfg)
    if stride == 1:
        return nn.Sequential(conv)
    return nn.Sequential(
        nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False), conv)


@MODELS.register_module()
class ResNetVd(BackboneContract, BaseModule):
    """ResNet-vd 18/34/50/101 (RT-DETR's ``PResNet`` variant d).

    Four stages at strides 4/8/16/32 with 64/128/256/512 channels (x4 for
    the bottleneck depths 50 and 101), after a three-conv stem.

    Args:
        depth (int): 18, 34, 50 or 101.
        out_indices (Sequence[int]): Stages to output (0-based, negatives
            count from the end). RT-DETR uses ``(1, 2, 3)``.
        frozen_stages (int): Freeze the stem and the first ``frozen_stages``
            stages (-1: nothing, 0: the stem only).
        norm_eval (bool): Keep every BN layer in eval mode while training.
        norm_cfg (dict): Norm of every conv. Defaults to BN.
        init_cfg (dict, optional): e.g. ``dict(type='Pretrained',
            checkpoint=...)`` (the official PResNet layout is converted).

    Shapes: (B, 3, H, W) -> tuple of (B, out_channels[i], ceil(H / s_i),
    ceil(W / s_i)) with ``s_i = out_strides[i]``.
    """

    arch_settings = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
    }
    stage_widths = (64, 128, 256, 512)
    smallest_cfg = dict(depth=18)

    def __init__(self,
                 depth: int = 50,
                 out_indices: Sequence[int] = (1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: ConfigType = dict(type='BN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        if depth not in self.arch_settings:
            raise ValueError(
                f'ResNetVd depth must be one of {sorted(self.arch_settings)}, '
                f'got {depth}')
        self.set_stage_args(out_indices, frozen_stages, norm_eval,
                            len(self.stage_widths))
        block, counts = self.arch_settings[depth]
        self.depth = depth
        self.stem = nn.Sequential(
            conv_bn(3, 32, 3, 2, act_cfg=RELU, norm_cfg=norm_cfg),
            conv_bn(32, 32, 3, 1, act_cfg=RELU, norm_cfg=norm_cfg),
            conv_bn(32, 64, 3, 1, act_cfg=RELU, norm_cfg=norm_cfg),
            nn.MaxPool2d(3, 2, 1))
        self.stages = nn.ModuleList()
        in_channels = 64
        for i, (width, count) in enumerate(zip(self.stage_widths, counts)):
            blocks = []
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                out_channels = width * block.expansion
                shortcut = (
                    projection_shortcut(in_channels, out_channels, stride,
                                        norm_cfg)
                    if j == 0 else nn.Identity())
                blocks.append(
                    block(in_channels, width, stride, shortcut, norm_cfg))
                in_channels = out_channels
            self.stages.append(nn.Sequential(*blocks))
        self.set_feature_info([w * block.expansion for w in self.stage_widths],
                              (4, 8, 16, 32))
        self.apply_frozen_stages()

    def convert_pretrained(
            self, state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Accept the official RT-DETR ``PResNet`` layout (its ImageNet
        weights ``ResNet*_vd_*pretrained_from_paddle.pth``: ``conv1.conv1_k``,
        ``res_layers.i.blocks.j.branch2x`` / ``short``), renamed by the
        official-checkpoint converter's mapping."""
        if not any(k.startswith(('conv1.conv1_', 'res_layers.'))
                   for k in state_dict):
            return state_dict
        converted = OrderedDict()
        for key, value in state_dict.items():
            new = rename_official_key('backbone.' + key)
            converted[new[len('backbone.'):] if new else key] = value
        return converted
