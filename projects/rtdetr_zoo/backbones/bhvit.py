"""CCRINet: the MSGDC / CCRI backbone of the RT-DETR + BHViT blog post.

Reproduces the backbone of the blog's Ultralytics YAML, which puts BHViT's
token mixer (MSGDC; Gao et al., "BHViT: Binarized Hybrid Vision
Transformer", CVPR 2025, https://arxiv.org/abs/2503.02394) into an RT-DETR
backbone of CSP blocks (``CCRI``)::

    Conv(64, 3, s2) -> Conv(128, 3, s2)            stem,   stride 4
    -> MSGDC token mixer                           stage 0, stride 4
    -> Conv(256, 3, s2) -> CCRI(256) x 4           stage 1, stride 8
    -> Conv(512, 3, s2) -> CCRI(512) x 4           stage 2, stride 16
    -> Conv(1024, 3, s2) -> CCRI(1024) x 2         stage 3, stride 32

Widths and depths follow the YAML's Ultralytics scales
``[depth, width, max_channels]``: a width ``c`` becomes
``ceil(min(c, max_channels) * width / 8) * 8`` and a repeat count ``n``
becomes ``max(round(n * depth), 1)``; the blog's model uses ``l``
(1024 -> 512).
``Conv`` is conv (no bias, padding k // 2) + BN + SiLU.
"""
import math
from typing import Sequence, Union

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from ..layers.msgdc import CCRI, MSGDC
from .base import BackboneContract

# Ultralytics scales of the blog's YAML: [depth, width, max_channels].
ARCH_SCALES = {
    'n': (0.33, 0.25, 1024),
    's': (0.33, 0.50, 1024),
    'm': (0.67, 0.75, 768),
    'l': (1.00, 1.00, 512),
    'x': (1.00, 1.25, 512),
}
STEM_WIDTHS = (64, 128)
# (width, CCRI repeats, CCRI shortcut) of stages 1-3, as in the blog's YAML.
STAGE_SETTINGS = ((256, 4, True), (512, 4, True), (1024, 2, False))
STRIDES = (4, 8, 16, 32)


@MODELS.register_module()
class CCRINet(BackboneContract, BaseModule):
    """MSGDC + CCRI backbone (the blog's RT-DETR "BHViT token mixer" model).

    Args:
        arch (str | dict): Ultralytics scale ``'n'``, ``'s'``, ``'m'``,
            ``'l'`` (the blog's) or ``'x'``, or a dict with ``depth``,
            ``width`` and ``max_channels``. Defaults to ``'l'``.
        in_channels (int): Image channels. Defaults to 3.
        out_indices (Sequence[int]): Stages to return (0-based, negatives
            count from the end), strides 4/8/16/32. Defaults to (1, 2, 3).
        frozen_stages (int): Freeze the stem and the first ``frozen_stages``
            stages (-1: nothing, 0: the stem only, 4: everything).
        norm_eval (bool): Keep every BN layer in eval mode while training
            (the MSGDC LayerNorms have no running statistics).
        ccri_cfg (dict, optional): Overrides of the CCRI arguments shared by
            all stages (``k``, ``lightconv``, ``scale``, ``e``, ``act``,
            ``mixer_norm_cfg``). Defaults: the blog's ``k=3``,
            ``lightconv=True`` (MSGDC bottlenecks), ``scale=2.0``, ``e=0.5``.
        mixer_norm_cfg (dict): Norm of the stride-4 MSGDC token mixer.
            Defaults to LN over channels (as BHViT).
        norm_cfg (dict): Norm of every conv. Defaults to BN.
        act_cfg (dict): Activation of the stride-2 convs. Defaults to SiLU.
        init_cfg (dict | list[dict], optional): e.g.
            ``dict(type='Pretrained', checkpoint=...)``.

    Shapes: (B, in_channels, H, W), any H and W -> tuple of
    (B, out_channels[i], ceil(H / s_i), ceil(W / s_i)), s_i = out_strides[i]
    (every stride-2 conv has padding 1, so each halves with ceil).
    For ``'l'``: channels (128, 256, 512, 512) at strides (4, 8, 16, 32).
    """

    smallest_cfg = dict(arch='n')

    def __init__(self,
                 arch: Union[str, dict] = 'l',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 ccri_cfg: OptConfigType = None,
                 mixer_norm_cfg: ConfigType = dict(type='LN', eps=1e-6),
                 norm_cfg: ConfigType = dict(type='BN'),
                 act_cfg: ConfigType = dict(type='SiLU'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        depth, width, max_channels = self._parse_arch(arch)
        self.set_stage_args(out_indices, frozen_stages, norm_eval,
                            len(STRIDES))

        def channels(c):
            return math.ceil(min(c, max_channels) * width / 8) * 8

        def repeats(n):
            return max(round(n * depth), 1) if n > 1 else n

        def down(cin, cout):
            return ConvModule(cin, cout, 3, stride=2, padding=1,
                              norm_cfg=norm_cfg, act_cfg=act_cfg)

        block_cfg = dict(k=3, lightconv=True, scale=2.0, e=0.5, act=True,
                         norm_cfg=norm_cfg)
        block_cfg.update(ccri_cfg or {})
        for key in ('c1', 'c2', 'n', 'shortcut'):
            if key in block_cfg:
                raise ValueError(
                    f'CCRINet ccri_cfg cannot set {key!r}: it is fixed per '
                    f'stage by the architecture')

        stem_widths = [channels(c) for c in STEM_WIDTHS]
        self.stem = nn.Sequential(
            down(in_channels, stem_widths[0]),
            down(stem_widths[0], stem_widths[1]))
        self.stages = nn.ModuleList(
            [MSGDC(stem_widths[1], norm_cfg=mixer_norm_cfg)])
        all_channels = [stem_widths[1]]
        cin = stem_widths[1]
        for c, n, shortcut in STAGE_SETTINGS:
            cout = channels(c)
            self.stages.append(nn.Sequential(
                down(cin, cout),
                CCRI(cout, cout, n=repeats(n), shortcut=shortcut,
                     **block_cfg)))
            all_channels.append(cout)
            cin = cout
        self.set_feature_info(all_channels, STRIDES)
        self.apply_frozen_stages()

    @staticmethod
    def _parse_arch(arch):
        if isinstance(arch, str):
            if arch not in ARCH_SCALES:
                raise ValueError(
                    f'CCRINet arch must be one of {sorted(ARCH_SCALES)} or a '
                    f'dict(depth, width, max_channels), got {arch!r}')
            return ARCH_SCALES[arch]
        if isinstance(arch, dict):
            missing = {'depth', 'width', 'max_channels'} - set(arch)
            if missing:
                raise ValueError(
                    f'CCRINet arch dict is missing {sorted(missing)}')
            return arch['depth'], arch['width'], arch['max_channels']
        raise ValueError(f'CCRINet arch must be a str or a dict, got {arch!r}')
