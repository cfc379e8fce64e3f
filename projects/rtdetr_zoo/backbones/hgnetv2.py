"""HGNetv2 backbone of RT-DETR-L and RT-DETR-X (Ultralytics ``rtdetr-l`` and
``rtdetr-x``).

Reproduces the Ultralytics ``rtdetr-l.yaml`` / ``rtdetr-x.yaml`` backbones
(PP-HGNetV2-L / X as used by RT-DETR, Zhao et al., CVPR 2024): an HG stem,
then four stages of HG blocks (a chain of convs whose outputs are all
concatenated, squeezed and excited by 1x1 convs), with depthwise stride-2
convs between the stages.
"""
import re
from collections import OrderedDict
from typing import Collection, Dict, Mapping, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig

from ..layers import conv_bn
from .base import BackboneContract

RELU = dict(type='ReLU')


def is_official_hgnetv2_layout(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether a state dict uses the official RT-DETR ``HGNetv2`` key names
    (``stages.s.blocks.b.layers.l``, ``aggregation_*_conv``)."""
    return any(re.match(r'stages\.\d+\.(blocks|downsample)\.', k)
               for k in state_dict)


def convert_official_hgnetv2(
        state_dict: Mapping[str, Tensor],
        downsample_stages: Collection[int]) -> Dict[str, Tensor]:
    """Map the official RT-DETR ``HGNetv2`` layout (lyuwenyu/RT-DETR, e.g.
    ``PPHGNetV2_L_ssld_pretrained_from_paddle.pth``) onto :class:`HGNetv2`.

    ``stem.stem2{a,b}.conv.1`` (padding + conv) -> ``stem.stem2{a,b}.conv``;
    ``stages.s.downsample`` -> ``stages.s.0``; ``stages.s.blocks.b`` ->
    ``stages.s.(b + 1 if s has a down-sampling conv else b)`` with
    ``layers`` -> ``convs``, ``aggregation_squeeze_conv`` -> ``squeeze``,
    ``aggregation_excitation_conv`` -> ``excite``. Other keys are kept, so
    that loading reports them as unexpected.
    """
    converted = OrderedDict()
    for key, value in state_dict.items():
        new = re.sub(r'^stem\.(stem2[ab])\.conv\.1\.', r'stem.\1.conv.', key)
        new = re.sub(r'^stages\.(\d+)\.downsample\.', r'stages.\1.0.', new)
        match = re.match(r'stages\.(\d+)\.blocks\.(\d+)\.(.+)$', new)
        if match:
            stage, block, rest = int(match[1]), int(match[2]), match[3]
            block += 1 if stage in downsample_stages else 0
            rest = re.sub(r'^layers\.', 'convs.', rest)
            rest = rest.replace('aggregation_squeeze_conv.', 'squeeze.')
            rest = rest.replace('aggregation_excitation_conv.', 'excite.')
            new = f'stages.{stage}.{block}.{rest}'
        converted[new] = value
    return converted


class HGStem(nn.Module):
    """Stem: 3x3 s2 conv, a 2x2-conv branch beside a 2x2 max-pool, 3x3 s2 conv.

    (B, 3, H, W) -> (B, out_channels, ceil(H / 4), ceil(W / 4)).
    """

    def __init__(self,
                 in_channels: int,
                 mid_channels: int,
                 out_channels: int,
                 norm_cfg: ConfigType = dict(type='BN')) -> None:
        super().__init__()
        cba = dict(act_cfg=RELU, norm_cfg=norm_cfg)
        self.stem1 = conv_bn(in_channels, mid_channels, 3, 2, **cba)
        self.stem2a = conv_bn(mid_channels, mid_channels // 2, 2, **cba)
        self.stem2b = conv_bn(mid_channels // 2, mid_channels, 2, **cba)
        self.stem3 = conv_bn(mid_channels * 2, mid_channels, 3, 2, **cba)
        self.stem4 = conv_bn(mid_channels, out_channels, 1, **cba)
        self.pool = nn.MaxPool2d(2, 1, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, out_channels, ceil(H / 4), ceil(W / 4))."""
        x = F.pad(self.stem1(x), [0, 1, 0, 1])
        branch = self.stem2b(F.pad(self.stem2a(x), [0, 1, 0, 1]))
        x = torch.cat([self.pool(x), branch], dim=1)
        return self.stem4(self.stem3(x))


class LightConv(nn.Module):
    """1x1 conv-BN then a depthwise kxk conv-BN-act."""

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int,
                 norm_cfg: ConfigType = dict(type='BN')) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_channels, out_channels, 1, norm_cfg=norm_cfg)
        self.conv2 = conv_bn(out_channels, out_channels, kernel_size,
                             groups=out_channels, act_cfg=RELU,
                             norm_cfg=norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H, W)."""
        return self.conv2(self.conv1(x))


class HGBlock(nn.Module):
    """HG block: ``num_convs`` chained convs, all outputs concatenated, then
    a 1x1 squeeze to ``out_channels // 2`` and a 1x1 excitation to
    ``out_channels``; residual when ``shortcut`` and widths match.
    (B, C_in, H, W) -> (B, out_channels, H, W).
    """

    def __init__(self,
                 in_channels: int,
                 mid_channels: int,
                 out_channels: int,
                 kernel_size: int = 3,
                 num_convs: int = 6,
                 light: bool = False,
                 shortcut: bool = False,
                 norm_cfg: ConfigType = dict(type='BN')) -> None:
        super().__init__()
        cba = dict(act_cfg=RELU, norm_cfg=norm_cfg)
        self.convs = nn.ModuleList()
        for i in range(num_convs):
            cin = in_channels if i == 0 else mid_channels
            self.convs.append(
                LightConv(cin, mid_channels, kernel_size, norm_cfg) if light
                else conv_bn(cin, mid_channels, kernel_size, **cba))
        self.squeeze = conv_bn(in_channels + num_convs * mid_channels,
                               out_channels // 2, 1, **cba)
        self.excite = conv_bn(out_channels // 2, out_channels, 1, **cba)
        self.add = shortcut and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H, W)."""
        feats = [x]
        for conv in self.convs:
            feats.append(conv(feats[-1]))
        y = self.excite(self.squeeze(torch.cat(feats, dim=1)))
        return y + x if self.add else y


@MODELS.register_module()
class HGNetv2(BackboneContract, BaseModule):
    """HGNetv2 backbone (``arch='L'``: RT-DETR-L / Ultralytics rtdetr-l;
    ``arch='X'``: RT-DETR-X / Ultralytics rtdetr-x).

    Stage settings ``(in, mid, out, num_blocks, kernel, light, downsample)``;
    every block has 6 convs; blocks after the first in a stage are residual.
    Four stages at strides 4/8/16/32. The settings are those of the
    official ``PPHGNetV2`` ``name='L'`` / ``'X'`` (lyuwenyu/RT-DETR,
    ``rtdetrv2_pytorch/src/nn/backbone/hgnetv2.py``) and of the Ultralytics
    YAMLs (``ultralytics/cfg/models/rt-detr/rtdetr-{l,x}.yaml``).

    Args:
        arch (str | dict): ``'L'``, ``'X'`` or a dict with ``stem`` (in,
            mid, out) and ``stages`` (list of the tuples above).
        out_indices (Sequence[int]): Stages to output (0-based, negatives
            count from the end). RT-DETR uses ``(1, 2, 3)``.
        frozen_stages (int): Freeze the stem and the first ``frozen_stages``
            stages (-1: nothing, 0: the stem only).
        norm_eval (bool): Keep every BN layer in eval mode while training.
        norm_cfg (dict): Norm of every conv. Defaults to BN.
        init_cfg (dict, optional): e.g. ``dict(type='Pretrained',
            checkpoint=...)``.

    Shapes: (B, 3, H, W) -> tuple of (B, out_channels[i], ceil(H / s_i),
    ceil(W / s_i)) with ``s_i = out_strides[i]``.
    """

    arch_zoo = {
        'L': dict(
            stem=(3, 32, 48),
            stages=[(48, 48, 128, 1, 3, False, False),
                    (128, 96, 512, 1, 3, False, True),
                    (512, 192, 1024, 3, 5, True, True),
                    (1024, 384, 2048, 1, 5, True, True)]),
        'X': dict(
            stem=(3, 32, 64),
            stages=[(64, 64, 128, 1, 3, False, False),
                    (128, 128, 512, 2, 3, False, True),
                    (512, 256, 1024, 5, 5, True, True),
                    (1024, 512, 2048, 2, 5, True, True)]),
    }
    smallest_cfg = dict(arch='L')

    def __init__(self,
                 arch: Union[str, dict] = 'L',
                 out_indices: Sequence[int] = (1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: ConfigType = dict(type='BN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        if isinstance(arch, str):
            if arch not in self.arch_zoo:
                raise ValueError(
                    f'HGNetv2 arch must be one of {sorted(self.arch_zoo)} or '
                    f'a dict, got {arch!r}')
            arch = self.arch_zoo[arch]
        stages = arch['stages']
        self.set_stage_args(out_indices, frozen_stages, norm_eval,
                            len(stages))
        self.stem = HGStem(*arch['stem'], norm_cfg=norm_cfg)
        self.stages = nn.ModuleList()
        for cin, mid, cout, num_blocks, kernel, light, downsample in stages:
            layers = []
            if downsample:
                layers.append(
                    conv_bn(cin, cin, 3, 2, groups=cin, norm_cfg=norm_cfg))
            for i in range(num_blocks):
                layers.append(HGBlock(cin if i == 0 else cout, mid, cout,
                                      kernel, light=light, shortcut=i > 0,
                                      norm_cfg=norm_cfg))
            self.stages.append(nn.Sequential(*layers))
        strides, stride = [], 4
        for stage in stages:
            stride *= 2 if stage[6] else 1
            strides.append(stride)
        self.set_feature_info([stage[2] for stage in stages], strides)
        self.downsample_stages = {
            i for i, stage in enumerate(stages) if stage[6]}
        self.apply_frozen_stages()

    def convert_pretrained(
            self, state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Accept the official RT-DETR ``HGNetv2`` checkpoint layout."""
        if is_official_hgnetv2_layout(state_dict):
            return convert_official_hgnetv2(state_dict,
                                            self.downsample_stages)
        return state_dict
