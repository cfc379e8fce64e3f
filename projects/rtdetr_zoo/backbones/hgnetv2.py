"""HGNetv2 backbones: PP-HGNetV2-L / X of RT-DETR-L and RT-DETR-X (Ultralytics
``rtdetr-l`` and ``rtdetr-x``) and the B0-B5 family of D-FINE.

Reproduces the Ultralytics ``rtdetr-l.yaml`` / ``rtdetr-x.yaml`` backbones
(PP-HGNetV2-L / X as used by RT-DETR, Zhao et al., CVPR 2024) and D-FINE's
``HGNetv2`` (Peng et al., ICLR 2025; ``engine/backbone/hgnetv2.py`` of
Peterande/D-FINE and ShihuaHuang95/DEIM): an HG stem, then four stages of HG
blocks (a chain of convs whose outputs are all concatenated, squeezed and
excited by 1x1 convs), with depthwise stride-2 convs between the stages.
B4 is L and B5 is X; the small ones (B0-B3) have fewer convs per block and,
in D-FINE's N/S/M models, a learnable scalar affine after every activation
(``use_lab``).
"""
from typing import Dict, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig

from ..engine.official_converter import (convert_official_hgnetv2,
                                         is_official_hgnetv2_layout)
from ..layers import conv_bn
from .base import BackboneContract

RELU = dict(type='ReLU')


class LearnableAffine(nn.Module):
    """``scale * x + bias`` with one learnable scalar each, initialised to
    the identity (PP-HGNetV2's ``LearnableAffineBlock``). Any shape."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        """Any shape -> the same shape."""
        return self.scale * x + self.bias


class ConvNormActAffine(ConvModule):
    """A ConvModule followed by a :class:`LearnableAffine` (``lab``): D-FINE's
    ``ConvBNAct`` with ``use_lab``. (B, C_in, H, W) -> (B, C_out, H', W')."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lab = LearnableAffine()

    def forward(self, x: Tensor, activate: bool = True,
                norm: bool = True) -> Tensor:
        """The ConvModule's output, scaled and shifted."""
        return self.lab(super().forward(x, activate, norm))


def hg_conv(in_channels: int,
            out_channels: int,
            kernel_size: int,
            stride: int = 1,
            groups: int = 1,
            act: bool = True,
            use_lab: bool = False,
            norm_cfg: ConfigType = dict(type='BN')) -> ConvModule:
    """Conv + norm, then ReLU when ``act``, then the learnable affine when
    ``act`` and ``use_lab`` (D-FINE puts it only after an activation)."""
    if act and use_lab:
        return ConvNormActAffine(
            in_channels, out_channels, kernel_size, stride=stride,
            padding=(kernel_size - 1) // 2, groups=groups, bias=False,
            norm_cfg=norm_cfg, act_cfg=RELU)
    return conv_bn(in_channels, out_channels, kernel_size, stride, groups,
                   act_cfg=RELU if act else None, norm_cfg=norm_cfg)


class HGStem(nn.Module):
    """Stem: 3x3 s2 conv, a 2x2-conv branch beside a 2x2 max-pool, 3x3 s2 conv.

    (B, 3, H, W) -> (B, out_channels, ceil(H / 4), ceil(W / 4)).
    """

    def __init__(self,
                 in_channels: int,
                 mid_channels: int,
                 out_channels: int,
                 use_lab: bool = False,
                 norm_cfg: ConfigType = dict(type='BN')) -> None:
        super().__init__()
        cba = dict(use_lab=use_lab, norm_cfg=norm_cfg)
        self.stem1 = hg_conv(in_channels, mid_channels, 3, 2, **cba)
        self.stem2a = hg_conv(mid_channels, mid_channels // 2, 2, **cba)
        self.stem2b = hg_conv(mid_channels // 2, mid_channels, 2, **cba)
        self.stem3 = hg_conv(mid_channels * 2, mid_channels, 3, 2, **cba)
        self.stem4 = hg_conv(mid_channels, out_channels, 1, **cba)
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
                 use_lab: bool = False,
                 norm_cfg: ConfigType = dict(type='BN')) -> None:
        super().__init__()
        self.conv1 = hg_conv(in_channels, out_channels, 1, act=False,
                             norm_cfg=norm_cfg)
        self.conv2 = hg_conv(out_channels, out_channels, kernel_size,
                             groups=out_channels, use_lab=use_lab,
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
                 use_lab: bool = False,
                 norm_cfg: ConfigType = dict(type='BN')) -> None:
        super().__init__()
        cba = dict(use_lab=use_lab, norm_cfg=norm_cfg)
        self.convs = nn.ModuleList()
        for i in range(num_convs):
            cin = in_channels if i == 0 else mid_channels
            self.convs.append(
                LightConv(cin, mid_channels, kernel_size, **cba) if light
                else hg_conv(cin, mid_channels, kernel_size, **cba))
        self.squeeze = hg_conv(in_channels + num_convs * mid_channels,
                               out_channels // 2, 1, **cba)
        self.excite = hg_conv(out_channels // 2, out_channels, 1, **cba)
        self.add = shortcut and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H, W)."""
        feats = [x]
        for conv in self.convs:
            feats.append(conv(feats[-1]))
        y = self.excite(self.squeeze(torch.cat(feats, dim=1)))
        return y + x if self.add else y


#: D-FINE's stage tables (``HGNetv2.arch_configs``), stage tuples
#: ``(in, mid, out, num_blocks, kernel, light, downsample, num_convs)``.
HGNETV2_ARCHS = {
    'B0': dict(stem=(3, 16, 16),
               stages=[(16, 16, 64, 1, 3, False, False, 3),
                       (64, 32, 256, 1, 3, False, True, 3),
                       (256, 64, 512, 2, 5, True, True, 3),
                       (512, 128, 1024, 1, 5, True, True, 3)]),
    'B1': dict(stem=(3, 24, 32),
               stages=[(32, 32, 64, 1, 3, False, False, 3),
                       (64, 48, 256, 1, 3, False, True, 3),
                       (256, 96, 512, 2, 5, True, True, 3),
                       (512, 192, 1024, 1, 5, True, True, 3)]),
    'B2': dict(stem=(3, 24, 32),
               stages=[(32, 32, 96, 1, 3, False, False, 4),
                       (96, 64, 384, 1, 3, False, True, 4),
                       (384, 128, 768, 3, 5, True, True, 4),
                       (768, 256, 1536, 1, 5, True, True, 4)]),
    'B3': dict(stem=(3, 24, 32),
               stages=[(32, 32, 128, 1, 3, False, False, 5),
                       (128, 64, 512, 1, 3, False, True, 5),
                       (512, 128, 1024, 3, 5, True, True, 5),
                       (1024, 256, 2048, 1, 5, True, True, 5)]),
    'B4': dict(stem=(3, 32, 48),
               stages=[(48, 48, 128, 1, 3, False, False, 6),
                       (128, 96, 512, 1, 3, False, True, 6),
                       (512, 192, 1024, 3, 5, True, True, 6),
                       (1024, 384, 2048, 1, 5, True, True, 6)]),
    'B5': dict(stem=(3, 32, 64),
               stages=[(64, 64, 128, 1, 3, False, False, 6),
                       (128, 128, 512, 2, 3, False, True, 6),
                       (512, 256, 1024, 5, 5, True, True, 6),
                       (1024, 512, 2048, 2, 5, True, True, 6)]),
}
HGNETV2_ARCHS['L'] = HGNETV2_ARCHS['B4']
HGNETV2_ARCHS['X'] = HGNETV2_ARCHS['B5']


@MODELS.register_module()
class HGNetv2(BackboneContract, BaseModule):
    """HGNetv2 backbone: ``arch='L'`` (RT-DETR-L / Ultralytics rtdetr-l),
    ``'X'`` (RT-DETR-X / rtdetr-x), ``'B0'``-``'B5'`` (D-FINE; B4 is L and
    B5 is X).

    Stage settings ``(in, mid, out, num_blocks, kernel, light, downsample,
    num_convs)``; every block has ``num_convs`` convs; blocks after the
    first in a stage are residual. Four stages at strides 4/8/16/32. The
    settings are those of the official ``PPHGNetV2`` ``name='L'`` / ``'X'``
    (lyuwenyu/RT-DETR, ``rtdetrv2_pytorch/src/nn/backbone/hgnetv2.py``), of
    the Ultralytics YAMLs (``ultralytics/cfg/models/rt-detr/rtdetr-{l,x}
    .yaml``) and of D-FINE's ``HGNetv2.arch_configs``
    (``engine/backbone/hgnetv2.py``). D-FINE's ImageNet weights are
    ``https://github.com/Peterande/storage/releases/download/dfinev1.0/
    PPHGNetV2_<arch>_stage1.pth`` and load as they are.

    Args:
        arch (str | dict): ``'L'``, ``'X'``, ``'B0'``-``'B5'`` or a dict with
            ``stem`` (in, mid, out) and ``stages`` (list of the tuples
            above).
        use_lab (bool): A learnable scalar affine after every activation
            (D-FINE's N, S and M models). Defaults to False.
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

    arch_zoo = HGNETV2_ARCHS
    smallest_cfg = dict(arch='B0', use_lab=True)

    def __init__(self,
                 arch: Union[str, dict] = 'L',
                 use_lab: bool = False,
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
        self.stem = HGStem(*arch['stem'], use_lab=use_lab, norm_cfg=norm_cfg)
        self.stages = nn.ModuleList()
        for (cin, mid, cout, num_blocks, kernel, light, downsample,
             num_convs) in stages:
            layers = []
            if downsample:
                layers.append(hg_conv(cin, cin, 3, 2, groups=cin, act=False,
                                      norm_cfg=norm_cfg))
            for i in range(num_blocks):
                layers.append(HGBlock(cin if i == 0 else cout, mid, cout,
                                      kernel, num_convs, light=light,
                                      shortcut=i > 0, use_lab=use_lab,
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
