"""RMT backbone: Retentive Networks Meet Vision Transformers.

Fan et al., "RMT: Retentive Networks Meet Vision Transformers" (CVPR 2024),
https://arxiv.org/abs/2309.11523, official code https://github.com/qhfan/RMT.

A conv stem (four 3x3 convs, stride 4) is followed by four stages of
retention blocks (CPE -> Manhattan self-attention with LCE -> FFN); stages
2-4 start with a 3x3 stride-2 conv + BN patch merging. Early stages use the
decomposed MaSA (attention along W then H), the last stage(s) the full MaSA
(RMT-T: decomposed in stages 1-2; S/B/L: in stages 1-3). Stage ``i`` outputs
its blocks' result (before the next patch merging) at stride ``4 * 2**i``,
followed by a LayerNorm as in the official detection backbone.

Checkpoints in the official layout (ImageNet ``patch_embed.* / layers.*``
and the detection backbone's ``extra_norms.*``) are converted on load by
:func:`convert_official_rmt`.
"""
import re
from collections import OrderedDict
from typing import (Collection, Dict, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, trunc_normal_init
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig

from ..layers.retention import RetentionStage, conv_norm_act
from .base import BackboneContract

ARCH_SETTINGS = {
    't': dict(
        embed_dims=(64, 128, 256, 512), depths=(2, 2, 8, 2),
        num_heads=(4, 4, 8, 16), heads_ranges=(4, 4, 6, 6),
        mlp_ratios=(3, 3, 3, 3), decomposed=(True, True, False, False),
        drop_path_rate=0.1),
    's': dict(
        embed_dims=(64, 128, 256, 512), depths=(3, 4, 18, 4),
        num_heads=(4, 4, 8, 16), heads_ranges=(4, 4, 6, 6),
        mlp_ratios=(4, 4, 3, 3), decomposed=(True, True, True, False),
        drop_path_rate=0.15),
    'b': dict(
        embed_dims=(80, 160, 320, 512), depths=(4, 8, 25, 8),
        num_heads=(5, 5, 10, 16), heads_ranges=(5, 5, 6, 6),
        mlp_ratios=(4, 4, 3, 3), decomposed=(True, True, True, False),
        layer_scales=(False, False, True, True), drop_path_rate=0.4),
    'l': dict(
        embed_dims=(112, 224, 448, 640), depths=(4, 8, 25, 8),
        num_heads=(7, 7, 14, 20), heads_ranges=(6, 6, 6, 6),
        mlp_ratios=(4, 4, 3, 3), decomposed=(True, True, True, False),
        layer_scales=(False, False, True, True), drop_path_rate=0.5),
}
REQUIRED_ARCH_KEYS = ('embed_dims', 'depths', 'num_heads', 'heads_ranges',
                      'mlp_ratios')
PER_STAGE_KEYS = REQUIRED_ARCH_KEYS + ('init_values', 'decomposed',
                                       'layer_scales')
OPTIONAL_ARCH_KEYS = ('init_values', 'decomposed', 'layer_scales',
                      'layer_scale_init', 'drop_path_rate')

# Official ``patch_embed.proj`` Sequential index -> (stem conv, part).
_STEM_INDEX = {0: (0, 'conv'), 1: (0, 'norm'), 3: (1, 'conv'),
               4: (1, 'norm'), 6: (2, 'conv'), 7: (2, 'norm'),
               9: (3, 'conv'), 10: (3, 'norm')}
_BLOCK_RENAMES = (('pos.conv.', 'cpe.'), ('retention_layer_norm.', 'norm1.'),
                  ('retention.lepe.conv.', 'attn.lce.'),
                  ('retention.', 'attn.'), ('final_layer_norm.', 'norm2.'),
                  ('ffn.dwconv.conv.', 'ffn.dwconv.'), ('gamma_1', 'gamma1'),
                  ('gamma_2', 'gamma2'))


def is_official_rmt_layout(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether a state dict uses the official RMT key names."""
    return any(k.startswith(('patch_embed.', 'layers.')) for k in state_dict)


def convert_official_rmt(state_dict: Mapping[str, Tensor],
                         out_indices: Collection[int] = (0, 1, 2, 3),
                         norm_name: str = 'bn') -> Dict[str, Tensor]:
    """Map an official RMT state dict onto :class:`RMT`'s key names.

    ``patch_embed.proj.{0..10}`` -> ``stem.{0..3}.{conv,bn}``;
    ``layers.i.blocks.j.*`` -> ``stages.i.blocks.j.*`` (``pos`` -> ``cpe``,
    ``retention(_layer_norm)`` -> ``attn``/``norm1``, ``lepe`` -> ``lce``,
    ``final_layer_norm`` -> ``norm2``, ``gamma_k`` (1, 1, 1, C) -> ``gammak``
    (C,)); ``layers.i.downsample.{reduction,norm}`` ->
    ``stages.(i+1).downsample.{conv,bn}``; ``extra_norms.i`` ->
    ``out_norms.i`` for ``i`` in ``out_indices``. Dropped: the decay/angle
    buffers ``layers.i.Relpos.*`` (recomputed from the arch), the classifier
    ``proj/norm/head`` and unused ``extra_norms``. Unknown keys are kept so
    that loading reports them as unexpected.
    """
    converted = OrderedDict()
    for key, value in state_dict.items():
        match = re.match(r'patch_embed\.proj\.(\d+)\.(.+)$', key)
        if match:
            index, part = _STEM_INDEX[int(match.group(1))]
            part = norm_name if part == 'norm' else part
            converted[f'stem.{index}.{part}.{match.group(2)}'] = value
            continue
        match = re.match(r'layers\.(\d+)\.downsample\.(reduction|norm)\.(.+)$',
                         key)
        if match:
            part = 'conv' if match.group(2) == 'reduction' else norm_name
            converted[f'stages.{int(match.group(1)) + 1}.downsample.{part}.'
                      f'{match.group(3)}'] = value
            continue
        if re.match(r'layers\.\d+\.Relpos\.', key) or re.match(
                r'(proj|norm|head)\.', key):
            continue
        match = re.match(r'layers\.(\d+)\.blocks\.(\d+)\.(.+)$', key)
        if match:
            name = match.group(3)
            for old, new in _BLOCK_RENAMES:
                if name.startswith(old):
                    name = new + name[len(old):]
                    break
            if name in ('gamma1', 'gamma2'):
                value = value.reshape(-1)
            converted[f'stages.{match.group(1)}.blocks.{match.group(2)}.'
                      f'{name}'] = value
            continue
        match = re.match(r'extra_norms\.(\d+)\.(.+)$', key)
        if match:
            if int(match.group(1)) in out_indices:
                converted[f'out_norms.{match.group(1)}.{match.group(2)}'] = (
                    value)
            continue
        converted[key] = value
    return converted


def _resolve_arch(arch):
    if isinstance(arch, str):
        if arch.lower() not in ARCH_SETTINGS:
            raise ValueError(
                f'RMT arch must be one of {sorted(ARCH_SETTINGS)} or a dict, '
                f'got {arch!r}')
        arch = ARCH_SETTINGS[arch.lower()]
    elif not isinstance(arch, dict):
        raise TypeError(f'RMT arch must be a str or a dict, got {type(arch)}')
    missing = [k for k in REQUIRED_ARCH_KEYS if k not in arch]
    if missing:
        raise KeyError(f'RMT arch dict misses {missing}')
    unknown = [k for k in arch
               if k not in REQUIRED_ARCH_KEYS + OPTIONAL_ARCH_KEYS]
    if unknown:
        raise KeyError(f'RMT arch dict has unknown keys {unknown}; allowed: '
                       f'{list(REQUIRED_ARCH_KEYS + OPTIONAL_ARCH_KEYS)}')
    num_stages = len(arch['depths'])
    settings = dict(
        init_values=(2, ) * num_stages,
        decomposed=(True, ) * (num_stages - 1) + (False, ),
        layer_scales=(False, ) * num_stages, layer_scale_init=1e-6,
        drop_path_rate=0.1)
    settings.update(arch)
    for key in PER_STAGE_KEYS:
        if len(settings[key]) != num_stages:
            raise ValueError(
                f'RMT arch {key} has {len(settings[key])} entries, expected '
                f'one per stage ({num_stages}, from depths)')
    for dims, heads in zip(settings['embed_dims'], settings['num_heads']):
        if dims % heads:
            raise ValueError(f'RMT embed_dims {dims} is not divisible by '
                             f'num_heads {heads}')
    return settings


@MODELS.register_module()
class RMT(BackboneContract, BaseModule):
    """RMT backbone (Fan et al., CVPR 2024) for RT-DETR.

    Args:
        arch (str | dict): ``'t'``, ``'s'``, ``'b'``, ``'l'`` (paper
            settings) or a dict with per-stage ``embed_dims``, ``depths``,
            ``num_heads``, ``heads_ranges``, ``mlp_ratios`` and optional
            ``init_values`` (2), ``decomposed`` (all but the last stage),
            ``layer_scales`` (False), ``layer_scale_init`` (1e-6),
            ``drop_path_rate`` (0.1).
        in_channels (int): Image channels.
        out_indices (Sequence[int]): Stages to output (0-based, negatives
            count from the end; strides 4/8/16/32). RT-DETR uses
            ``(1, 2, 3)``.
        frozen_stages (int): Freeze the stem and the first ``frozen_stages``
            stages (-1: nothing, 0: the stem only).
        norm_eval (bool): Keep every BN layer in eval mode while training.
        drop_path_rate (float | None): Stochastic depth rate, linearly
            increasing over blocks; None takes the arch's ImageNet value.
        norm_cfg (dict): Norm of the stem and patch merging convs.
        out_norm (bool): LayerNorm on every output (official detection
            backbone's ``extra_norms``).
        ffn_dwconv (bool): 3x3 depthwise conv inside the FFN (official RMT;
            the blog post's copy has none).
        use_rope (bool): xPos-style rotation of q/k (official RMT; absent
            from the blog post's copy). No parameters either way.
        with_cp (bool): Gradient checkpointing of the blocks.
        decay_cache_size (int): Feature sizes whose decay masks each stage
            caches.
        init_cfg (dict | None): ``dict(type='Pretrained', checkpoint=...,
            prefix=None)`` loads a checkpoint in our or the official layout.

    Shapes: (B, 3, H, W) -> tuple of (B, out_channels[i], ceil(H / s_i),
    ceil(W / s_i)) with s = (4, 8, 16, 32)[out_indices].
    """

    smallest_cfg = dict(arch='t')

    def __init__(self,
                 arch: Union[str, dict] = 't',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 drop_path_rate: Optional[float] = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 out_norm: bool = True,
                 ffn_dwconv: bool = True,
                 use_rope: bool = True,
                 with_cp: bool = False,
                 decay_cache_size: int = 4,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        settings = _resolve_arch(arch)
        dims = settings['embed_dims']
        depths = settings['depths']
        num_stages = len(depths)
        self.set_stage_args(out_indices, frozen_stages, norm_eval, num_stages)
        if drop_path_rate is None:
            drop_path_rate = settings['drop_path_rate']
        if not 0 <= drop_path_rate < 1:
            raise ValueError(
                f'RMT drop_path_rate must be in [0, 1), got {drop_path_rate}')
        self.arch_settings = settings
        self.out_norm = out_norm

        gelu = dict(type='GELU')
        self.stem = nn.Sequential(
            conv_norm_act(in_channels, dims[0] // 2, 2, norm_cfg, gelu),
            conv_norm_act(dims[0] // 2, dims[0] // 2, 1, norm_cfg, gelu),
            conv_norm_act(dims[0] // 2, dims[0], 2, norm_cfg, gelu),
            conv_norm_act(dims[0], dims[0], 1, norm_cfg))
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList()
        for i in range(num_stages):
            start = sum(depths[:i])
            self.stages.append(RetentionStage(
                in_channels=dims[i - 1] if i > 0 else None,
                embed_dims=dims[i], depth=depths[i],
                num_heads=settings['num_heads'][i],
                ffn_dims=int(settings['mlp_ratios'][i] * dims[i]),
                decomposed=settings['decomposed'][i],
                init_value=settings['init_values'][i],
                heads_range=settings['heads_ranges'][i],
                drop_paths=rates[start:start + depths[i]],
                layer_scale_init=(settings['layer_scale_init']
                                  if settings['layer_scales'][i] else None),
                ffn_dwconv=ffn_dwconv, use_rope=use_rope, norm_cfg=norm_cfg,
                with_cp=with_cp, decay_cache_size=decay_cache_size))
        self.out_norms = nn.ModuleDict(
            {str(i): nn.LayerNorm(dims[i]) for i in self.out_indices}
            if out_norm else {})
        self.set_feature_info(dims, [4 * 2**i for i in range(num_stages)])
        self.apply_frozen_stages()

    def stage_module_names(self) -> Tuple[List[str], List[List[str]]]:
        """Stage ``i`` is its retention blocks and its output norm."""
        return ['stem'], [
            [f'stages.{i}'] + ([f'out_norms.{i}']
                               if str(i) in self.out_norms else [])
            for i in range(self.num_stages)
        ]

    def default_init(self) -> None:
        """The official init: Linear trunc-normal std 0.02, LayerNorm 1/0."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_init(module, std=0.02, bias=0.0)
            elif isinstance(module, nn.LayerNorm):
                constant_init(module, 1.0, bias=0.0)

    def convert_pretrained(
            self, state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Accept checkpoints in the official RMT layout (key mapping)."""
        if is_official_rmt_layout(state_dict):
            return convert_official_rmt(state_dict, self.out_indices,
                                        self.stem[0].norm_name)
        return state_dict

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """(B, 3, H, W) -> tuple of (B, out_channels[i], ceil(H / s_i),
        ceil(W / s_i)), with LayerNorm when ``out_norm``."""
        x = self.stem(x).permute(0, 2, 3, 1)
        outs = []
        for i in range(self.out_indices[-1] + 1):
            x = self.stages[i](x)
            if i in self.out_indices:
                out = self.out_norms[str(i)](x) if self.out_norm else x
                outs.append(out.permute(0, 3, 1, 2).contiguous())
        return tuple(outs)
