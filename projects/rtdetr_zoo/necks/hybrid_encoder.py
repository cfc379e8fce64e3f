"""RT-DETR's efficient hybrid encoder (AIFI + CCFM) as an mmdet neck."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from ..layers import (build_aifi, build_registered, build_upsampler, conv_bn,
                      match_size)


@MODELS.register_module()
class HybridEncoder(BaseModule):
    """Hybrid encoder of RT-DETR (Zhao et al., CVPR 2024, Sec. 4.2).

    1. Input projection: per level a 1x1 conv + norm to ``hidden_dim``.
    2. AIFI: a transformer encoder (:class:`AIFI`) on the levels in
       ``use_encoder_idx`` (the stride-32 level by default).
    3. CCFM: a top-down FPN (1x1 lateral conv, up-sampling, concat,
       :class:`CSPRepLayer`) then a bottom-up PAN (3x3 stride-2 conv, concat,
       :class:`CSPRepLayer`).

    Args:
        in_channels (list[int]): Channels of the backbone levels, finest first
            (strides 8/16/32 in RT-DETR).
        hidden_dim (int): Channels of every output level. Defaults to 256.
        use_encoder_idx (Sequence[int]): Levels processed by AIFI.
        num_encoder_layers (int): Transformer layers per AIFI (0 disables it).
        num_heads (int), ffn_dim (int), dropout (float), enc_act_cfg (dict):
            AIFI settings (8 heads, FFN 1024, dropout 0, GELU).
        pe_temperature (float): AIFI position-embedding temperature.
        expansion (float): Hidden width ratio of the CSP blocks.
        depth_mult (float): Depth multiplier: ``round(3 * depth_mult)``
            RepVGG blocks per CSP block.
        act_cfg (dict): Activation of the CCFM convs. Defaults to SiLU.
        eval_spatial_size (tuple[int, int], optional): (H, W) of the input
            image at a fixed evaluation size; AIFI caches its position
            embedding for it.
        feat_strides (Sequence[int]): Strides of the input levels, one per
            level (AIFI's cached size is ``ceil(eval_spatial_size / s)``).
            Defaults to (8, 16, 32).
        upsample_cfg (dict): Top-down up-sampler, built by
            :func:`~rtdetr_zoo.layers.build_upsampler` (default nearest
            x2).
        csp_block_cfg (dict, optional): Bottleneck type of the CSP blocks
            (default RepVGG), see :class:`CSPRepLayer`.
        norm_cfg (dict): Norm of every conv (projections, CCFM convs and CSP
            blocks). Defaults to BN.
        fusion_block_cfg (dict, optional): Registered FPN / PAN fusion block,
            built with ``in_channels=2 * hidden_dim``,
            ``out_channels=hidden_dim``, ``num_blocks``, ``expansion``,
            ``act_cfg``, ``block_cfg=csp_block_cfg`` and ``norm_cfg`` where
            it does not set them. Defaults to RT-DETR's
            :class:`CSPRepLayer`; D-FINE's is
            ``dict(type='RepNCSPELAN4')``.
        downsample_cfg (dict, optional): Registered PAN down-sampling block,
            built with ``in_channels`` = ``out_channels`` = ``hidden_dim``
            and ``norm_cfg``. Defaults to RT-DETR's 3x3 stride-2
            conv-norm-act; D-FINE's is ``dict(type='SCDown')``.
        lateral_act (bool): Whether the FPN's 1x1 lateral convs end with
            ``act_cfg`` (RT-DETR) or not (D-FINE). Defaults to True.

    Attributes:
        out_strides (tuple[int]): Stride of each output (``feat_strides``).

    Shapes: a tuple of L maps (B, C_i, H_i, W_i) with H_i = ceil(H / s_i) ->
    a tuple of L maps (B, hidden_dim, H_i, W_i).
    """

    def __init__(
            self, in_channels: Sequence[int] = (512, 1024, 2048),
            hidden_dim: int = 256, use_encoder_idx: Sequence[int] = (2, ),
            num_encoder_layers: int = 1, num_heads: int = 8,
            ffn_dim: int = 1024, dropout: float = 0.0,
            enc_act_cfg: ConfigType = dict(type='GELU'),
            pe_temperature: float = 10000., expansion: float = 1.0,
            depth_mult: float = 1.0, act_cfg: ConfigType = dict(type='SiLU'),
            eval_spatial_size: Optional[Tuple[int, int]] = None,
            feat_strides: Sequence[int] = (8, 16, 32),
            upsample_cfg: ConfigType = dict(type='nearest', scale_factor=2),
            csp_block_cfg: OptConfigType = None,
            norm_cfg: ConfigType = dict(type='BN'),
            fusion_block_cfg: OptConfigType = None,
            downsample_cfg: OptConfigType = None,
            lateral_act: bool = True,
            init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        self.in_channels = list(in_channels)
        self.hidden_dim = hidden_dim
        self.use_encoder_idx = list(use_encoder_idx)
        num_levels = len(self.in_channels)
        bad = [i for i in self.use_encoder_idx if not 0 <= i < num_levels]
        if bad:
            raise ValueError(
                f'use_encoder_idx {bad} out of range for {num_levels} input '
                f'levels (in_channels={self.in_channels})')
        if len(feat_strides) != num_levels:
            raise ValueError(
                f'HybridEncoder feat_strides {list(feat_strides)} must have '
                f'one stride per input level (in_channels={self.in_channels})')
        self.out_strides = tuple(feat_strides)
        self.input_proj = nn.ModuleList(
            conv_bn(c, hidden_dim, 1, norm_cfg=norm_cfg)
            for c in self.in_channels)
        self.encoder = nn.ModuleList()
        if num_encoder_layers > 0:
            self.encoder.extend(
                build_aifi(hidden_dim, num_heads, ffn_dim, dropout,
                           enc_act_cfg, num_encoder_layers, pe_temperature,
                           eval_spatial_size, feat_strides[idx])
                for idx in self.use_encoder_idx)
        fusion_block_cfg = fusion_block_cfg or dict(type='CSPRepLayer')

        def fusion_block():
            return build_registered(
                fusion_block_cfg, 'fusion_block_cfg',
                in_channels=hidden_dim * 2, out_channels=hidden_dim,
                num_blocks=round(3 * depth_mult), expansion=expansion,
                act_cfg=act_cfg, block_cfg=csp_block_cfg, norm_cfg=norm_cfg)

        def downsample():
            if downsample_cfg is None:
                return conv_bn(hidden_dim, hidden_dim, 3, stride=2,
                               act_cfg=act_cfg, norm_cfg=norm_cfg)
            return build_registered(
                downsample_cfg, 'downsample_cfg', in_channels=hidden_dim,
                out_channels=hidden_dim, norm_cfg=norm_cfg)

        self.lateral_convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        self.fpn_blocks = nn.ModuleList()
        self.downsample_convs = nn.ModuleList()
        self.pan_blocks = nn.ModuleList()
        for _ in range(num_levels - 1):
            self.lateral_convs.append(
                conv_bn(hidden_dim, hidden_dim, 1,
                        act_cfg=act_cfg if lateral_act else None,
                        norm_cfg=norm_cfg))
            self.upsamples.append(build_upsampler(upsample_cfg, hidden_dim))
            self.fpn_blocks.append(fusion_block())
            self.downsample_convs.append(downsample())
            self.pan_blocks.append(fusion_block())

    def forward(self, feats: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        if len(feats) != len(self.in_channels):
            raise ValueError(
                f'HybridEncoder expects {len(self.in_channels)} feature maps '
                f'(in_channels={self.in_channels}), got {len(feats)}')
        proj = [conv(f) for conv, f in zip(self.input_proj, feats)]
        for encoder, idx in zip(self.encoder, self.use_encoder_idx):
            proj[idx] = encoder(proj[idx])

        # Top-down FPN, coarsest level first.
        inner_outs = [proj[-1]]
        for i, idx in enumerate(range(len(proj) - 1, 0, -1)):
            feat_high = self.lateral_convs[i](inner_outs[0])
            inner_outs[0] = feat_high
            feat_low = proj[idx - 1]
            upsampled = match_size(self.upsamples[i](feat_high), feat_low)
            inner_outs.insert(
                0, self.fpn_blocks[i](torch.cat([upsampled, feat_low], dim=1)))

        # Bottom-up PAN.
        outs = [inner_outs[0]]
        for i in range(len(proj) - 1):
            feat_high = inner_outs[i + 1]
            down = match_size(self.downsample_convs[i](outs[-1]), feat_high)
            outs.append(
                self.pan_blocks[i](torch.cat([down, feat_high], dim=1)))
        return tuple(outs)
