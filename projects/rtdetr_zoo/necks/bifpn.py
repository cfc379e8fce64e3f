"""RT-DETR encoder with BiFPN weighted fusion (the blog's
``rtdetr-MobileNetv4-BiFPN`` neck).

BiFPN: Tan et al., "EfficientDet: Scalable and Efficient Object Detection",
CVPR 2020. AIFI and the RepC3 (``CSPRepLayer``) fusion blocks: Zhao et al.,
"DETRs Beat YOLOs on Real-time Object Detection", CVPR 2024.
"""
from typing import Optional, Sequence, Tuple

import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from ..layers import (CSPRepLayer, WeightedFusion, build_aifi,
                      build_upsampler, conv_bn, match_size)


@MODELS.register_module()
class BiFPNHybridEncoder(BaseModule):
    """AIFI on the coarsest level, then one bidirectional BiFPN layer whose
    fusion nodes are followed by RepC3 blocks.

    Inputs are ``L >= 3`` backbone levels, finest first (the blog's model:
    P2-P5 at strides 4/8/16/32). The finest level (P2) only feeds the
    bottom-up path; the ``L - 1`` others are the outputs (P3-P5). With
    ``P_i`` the 1x1 conv-norm-act projections of the inputs to
    ``hidden_dim`` channels (the coarsest after ``input_proj`` -> AIFI ->
    ``lateral_conv``), ``F`` a :class:`WeightedFusion` node and ``R`` a
    :class:`CSPRepLayer`:

    * top-down, for the levels below the top:
      ``T_i = R(F(up(T_{i+1}), P_i))`` with ``T_top = P_top``;
    * bottom-up: ``O_1 = R(F(down(P2), P_1, T_1))``,
      ``O_i = R(F(down(O_{i-1}), P_i, T_i))`` for the middle levels and
      ``O_top = R(F(down(O_{top-1}), P_top))``.

    ``up`` is the configured up-sampler (nearest x2), ``down`` a 3x3 stride-2
    conv-norm-act. With the defaults and in_channels ``[32, 64, 96, 1280]``
    this is the blog's head (its layers 5-25) with the decoder left out.

    Args:
        in_channels (Sequence[int]): Channels of the input levels, finest
            first.
        hidden_dim (int): Channels of every output. Defaults to 256.
        num_encoder_layers (int): AIFI layers (0 disables AIFI).
        num_heads (int), ffn_dim (int), dropout (float), enc_act_cfg (dict):
            AIFI settings (8 heads, FFN 1024, dropout 0, GELU).
        pe_temperature (float): AIFI position-embedding temperature.
        depth_mult (float): Depth multiplier: ``round(3 * depth_mult)``
            RepVGG blocks per RepC3 (3 by default, as the blog's).
        expansion (float): Hidden width ratio of the RepC3 blocks.
        act_cfg (dict): Activation of the convs. Defaults to SiLU.
        weight_act (str): Fusion weight activation: ``'relu'`` (fast
            normalised fusion, default) or ``'swish'`` (the blog's).
        fusion_eps (float): Fusion normalisation epsilon. Defaults to 1e-4.
        eval_spatial_size (tuple[int, int], optional): (H, W) of the input
            image at a fixed evaluation size (AIFI caches its embedding).
        feat_strides (Sequence[int]): Strides of the input levels, one per
            level (AIFI's cached size is ``ceil(eval_spatial_size / s)`` for
            the coarsest). Defaults to (4, 8, 16, 32).
        upsample_cfg (dict): Top-down up-sampler, see
            :func:`~rtdetr_zoo.layers.build_upsampler`.
        csp_block_cfg (dict, optional): Bottleneck of the RepC3 blocks
            (default RepVGG), see :class:`CSPRepLayer`.
        norm_cfg (dict): Norm of every conv (projections, resampling convs
            and RepC3 blocks). Defaults to BN.

    Attributes:
        out_strides (tuple[int]): Stride of each output
            (``feat_strides[1:]``).

    Shapes: a tuple of L maps (B, C_i, H_i, W_i) with H_i = ceil(H / s_i) ->
    a tuple of L - 1 maps (B, hidden_dim, H_i, W_i), levels 1..L-1.
    """

    def __init__(self, in_channels: Sequence[int] = (32, 64, 96, 1280),
                 hidden_dim: int = 256, num_encoder_layers: int = 1,
                 num_heads: int = 8, ffn_dim: int = 1024,
                 dropout: float = 0.0,
                 enc_act_cfg: ConfigType = dict(type='GELU'),
                 pe_temperature: float = 10000., depth_mult: float = 1.0,
                 expansion: float = 1.0,
                 act_cfg: ConfigType = dict(type='SiLU'),
                 weight_act: str = 'relu', fusion_eps: float = 1e-4,
                 eval_spatial_size: Optional[Tuple[int, int]] = None,
                 feat_strides: Sequence[int] = (4, 8, 16, 32),
                 upsample_cfg: ConfigType = dict(type='nearest',
                                                 scale_factor=2),
                 csp_block_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        self.in_channels = list(in_channels)
        if len(self.in_channels) < 3:
            raise ValueError(
                f'BiFPNHybridEncoder needs at least 3 input levels (an extra '
                f'fine level and two outputs), got in_channels='
                f'{self.in_channels}')
        if len(feat_strides) != len(self.in_channels):
            raise ValueError(
                f'BiFPNHybridEncoder feat_strides {list(feat_strides)} must '
                f'have one stride per input level (in_channels='
                f'{self.in_channels})')
        self.hidden_dim = hidden_dim
        self.out_strides = tuple(feat_strides[1:])
        num_outs = len(self.in_channels) - 1
        cna = dict(act_cfg=act_cfg, norm_cfg=norm_cfg)

        # Encoder on the coarsest level: projection, AIFI, lateral conv.
        self.input_proj = conv_bn(self.in_channels[-1], hidden_dim, 1,
                                  norm_cfg=norm_cfg)
        self.encoder = None
        if num_encoder_layers > 0:
            self.encoder = build_aifi(
                hidden_dim, num_heads, ffn_dim, dropout, enc_act_cfg,
                num_encoder_layers, pe_temperature, eval_spatial_size,
                feat_strides[-1])
        self.lateral_conv = conv_bn(hidden_dim, hidden_dim, 1, **cna)

        # BiFPN inputs: output levels projected to hidden_dim, the extra fine
        # level down-sampled to the finest output level.
        self.level_convs = nn.ModuleList(
            conv_bn(c, hidden_dim, 1, **cna)
            for c in self.in_channels[1:-1] + [hidden_dim])
        self.extra_down = conv_bn(self.in_channels[0], hidden_dim, 3, 2, **cna)

        def fusion(num_inputs):
            return WeightedFusion(num_inputs, weight_act, fusion_eps)

        num_blocks = round(3 * depth_mult)

        def csp():
            return CSPRepLayer(hidden_dim, hidden_dim, num_blocks, expansion,
                               act_cfg, csp_block_cfg, norm_cfg)

        # Top-down nodes, coarse to fine (levels num_outs - 2 .. 0).
        self.upsamples = nn.ModuleList()
        self.td_fusions = nn.ModuleList()
        self.td_blocks = nn.ModuleList()
        for _ in range(num_outs - 1):
            self.upsamples.append(build_upsampler(upsample_cfg, hidden_dim))
            self.td_fusions.append(fusion(2))
            self.td_blocks.append(csp())
        # Bottom-up nodes, fine to coarse (levels 0 .. num_outs - 1).
        self.downsamples = nn.ModuleList(
            conv_bn(hidden_dim, hidden_dim, 3, 2, **cna)
            for _ in range(num_outs - 1))
        self.bu_fusions = nn.ModuleList(
            fusion(3 if i < num_outs - 1 else 2) for i in range(num_outs))
        self.bu_blocks = nn.ModuleList(csp() for _ in range(num_outs))

    def forward(self, feats: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        if len(feats) != len(self.in_channels):
            raise ValueError(
                f'BiFPNHybridEncoder expects {len(self.in_channels)} feature '
                f'maps (in_channels={self.in_channels}), got {len(feats)}')
        top = self.input_proj(feats[-1])
        if self.encoder is not None:
            top = self.encoder(top)
        top = self.lateral_conv(top)
        levels = [conv(f) for conv, f in
                  zip(self.level_convs, list(feats[1:-1]) + [top])]

        # Top-down path.
        num_outs = len(levels)
        tds = [None] * num_outs
        tds[-1] = levels[-1]
        for k, i in enumerate(range(num_outs - 2, -1, -1)):
            up = match_size(self.upsamples[k](tds[i + 1]), levels[i])
            tds[i] = self.td_blocks[k](self.td_fusions[k]([up, levels[i]]))

        # Bottom-up path.
        outs = []
        down = match_size(self.extra_down(feats[0]), levels[0])
        for i in range(num_outs):
            if i > 0:
                down = match_size(self.downsamples[i - 1](outs[-1]),
                                  levels[i])
            inputs = [down, levels[i]]
            if i < num_outs - 1:
                inputs.append(tds[i])
            outs.append(self.bu_blocks[i](self.bu_fusions[i](inputs)))
        return tuple(outs)
