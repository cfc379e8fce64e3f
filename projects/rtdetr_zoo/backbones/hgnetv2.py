"""HGNetv2 backbone of RT-DETR-L (the ``rtdetr-l`` baseline of the seeds).

Reproduces the Ultralytics ``rtdetr-l.yaml`` backbone (PP-HGNetV2-L as used
by RT-DETR, Zhao et al., CVPR 2024): an HG stem, then four stages of
HG blocks (a chain of convs whose outputs are all concatenated, squeezed and
excited by 1x1 convs), with depthwise stride-2 convs between the stages.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmdet.registry import MODELS

from ..layers import conv_bn
from ._contract import BackboneContractMixin

RELU = dict(type='ReLU')


class HGStem(nn.Module):
    """Stem: 3x3 s2 conv, a 2x2-conv branch beside a 2x2 max-pool, 3x3 s2 conv.

    (B, 3, H, W) -> (B, out_channels, ceil(H / 4), ceil(W / 4)).
    """

    def __init__(self, in_channels, mid_channels, out_channels):
        super().__init__()
        self.stem1 = conv_bn(in_channels, mid_channels, 3, 2, act_cfg=RELU)
        self.stem2a = conv_bn(mid_channels, mid_channels // 2, 2, act_cfg=RELU)
        self.stem2b = conv_bn(mid_channels // 2, mid_channels, 2, act_cfg=RELU)
        self.stem3 = conv_bn(mid_channels * 2, mid_channels, 3, 2, act_cfg=RELU)
        self.stem4 = conv_bn(mid_channels, out_channels, 1, act_cfg=RELU)
        self.pool = nn.MaxPool2d(2, 1, ceil_mode=True)

    def forward(self, x):
        x = F.pad(self.stem1(x), [0, 1, 0, 1])
        branch = self.stem2b(F.pad(self.stem2a(x), [0, 1, 0, 1]))
        x = torch.cat([self.pool(x), branch], dim=1)
        return self.stem4(self.stem3(x))


class LightConv(nn.Module):
    """1x1 conv-BN then a depthwise kxk conv-BN-act."""

    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.conv1 = conv_bn(in_channels, out_channels, 1)
        self.conv2 = conv_bn(out_channels, out_channels, kernel_size,
                             groups=out_channels, act_cfg=RELU)

    def forward(self, x):
        return self.conv2(self.conv1(x))


class HGBlock(nn.Module):
    """HG block: ``num_convs`` chained convs, all outputs concatenated, then
    a 1x1 squeeze to ``out_channels // 2`` and a 1x1 excitation to
    ``out_channels``; residual when ``shortcut`` and widths match.
    (B, C_in, H, W) -> (B, out_channels, H, W).
    """

    def __init__(self, in_channels, mid_channels, out_channels, kernel_size=3,
                 num_convs=6, light=False, shortcut=False):
        super().__init__()
        self.convs = nn.ModuleList()
        for i in range(num_convs):
            cin = in_channels if i == 0 else mid_channels
            self.convs.append(
                LightConv(cin, mid_channels, kernel_size) if light else
                conv_bn(cin, mid_channels, kernel_size, act_cfg=RELU))
        self.squeeze = conv_bn(in_channels + num_convs * mid_channels,
                               out_channels // 2, 1, act_cfg=RELU)
        self.excite = conv_bn(out_channels // 2, out_channels, 1, act_cfg=RELU)
        self.add = shortcut and in_channels == out_channels

    def forward(self, x):
        feats = [x]
        for conv in self.convs:
            feats.append(conv(feats[-1]))
        y = self.excite(self.squeeze(torch.cat(feats, dim=1)))
        return y + x if self.add else y


@MODELS.register_module()
class HGNetv2(BackboneContractMixin, BaseModule):
    """HGNetv2 backbone (``arch='L'``: RT-DETR-L / Ultralytics rtdetr-l).

    Stage settings ``(in, mid, out, num_blocks, kernel, light, downsample)``;
    every block has 6 convs; blocks after the first in a stage are residual.

    Args:
        arch (str | dict): ``'L'`` or a dict with ``stem`` (in, mid, out) and
            ``stages`` (list of the tuples above).
        out_indices (Sequence[int]): Stages to output (0..3 at strides
            4/8/16/32). RT-DETR uses ``(1, 2, 3)``.
        frozen_stages (int): Freeze the stem and the first ``frozen_stages``
            stages (-1: nothing).
        norm_eval (bool): Keep every BN layer in eval mode while training.

    Shapes: (B, 3, H, W) -> tuple of (B, out_channels[i], ~H / s_i, ~W / s_i).
    """

    arch_zoo = {
        'L': dict(
            stem=(3, 32, 48),
            stages=[(48, 48, 128, 1, 3, False, False),
                    (128, 96, 512, 1, 3, False, True),
                    (512, 192, 1024, 3, 5, True, True),
                    (1024, 384, 2048, 1, 5, True, True)]),
    }

    def __init__(self, arch='L', out_indices=(1, 2, 3), frozen_stages=-1,
                 norm_eval=False, init_cfg=None):
        super().__init__(init_cfg)
        if isinstance(arch, str):
            if arch not in self.arch_zoo:
                raise ValueError(
                    f'HGNetv2 arch must be one of {sorted(self.arch_zoo)} or '
                    f'a dict, got {arch!r}')
            arch = self.arch_zoo[arch]
        stages = arch['stages']
        self.set_stage_args(out_indices, frozen_stages, len(stages))
        self.norm_eval = norm_eval
        self.stem = HGStem(*arch['stem'])
        self.stages = nn.ModuleList()
        for cin, mid, cout, num_blocks, kernel, light, downsample in stages:
            layers = []
            if downsample:
                layers.append(conv_bn(cin, cin, 3, 2, groups=cin))
            for i in range(num_blocks):
                layers.append(HGBlock(cin if i == 0 else cout, mid, cout,
                                      kernel, light=light, shortcut=i > 0))
            self.stages.append(nn.Sequential(*layers))
        self.out_channels = [stages[i][2] for i in self.out_indices]
        self.out_strides = [(4, 8, 16, 32)[i] for i in self.out_indices]
        self._freeze_stages()
