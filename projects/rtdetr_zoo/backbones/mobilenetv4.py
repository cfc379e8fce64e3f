"""MobileNetV4 backbones (Qin et al., "MobileNetV4: Universal Models for the
Mobile Ecosystem", ECCV 2024, arXiv:2404.10518).

Five named architectures with the block specifications of the paper's
appendix (identical to TensorFlow Model Garden's ``mobilenet.py`` and timm's
``mobilenetv4_*``): ``conv_small``, ``conv_medium``, ``conv_large``,
``hybrid_medium`` and ``hybrid_large``. Building blocks:

* a 3x3 stride-2 conv-BN-act stem;
* ``conv``: conv-BN-act (the early stages of ConvSmall);
* ``fused_ib``: fused inverted bottleneck, a kxk expansion conv then a 1x1
  linear projection;
* ``uib``: universal inverted bottleneck, an optional depthwise conv before
  the 1x1 expansion ("start") and an optional one between expansion and
  projection ("middle"); both present = ExtraDW, start only = ConvNeXt-like,
  middle only = inverted bottleneck, none = FFN;
* ``mqa``: Mobile MQA, multi-query attention (one key and one value head
  shared by all query heads) whose keys and values are down-sampled by a
  stride-``kv_stride`` depthwise conv + BN (hybrid models only).

Corrections with respect to the widely copied PyTorch port: the optional
query down-sampling pools the feature map (not the stride values) and is
undone before the output projection, values have ``value_dim`` channels,
keys/values are down-sampled at the configured ``kv_stride``, every block of
a hybrid model has a learnable per-channel layer scale initialised to 1e-5,
hybrid-large uses GELU (the others ReLU), UIB and FusedIB blocks are
residual when their input and output shapes match, the FusedIB projection is
linear, and attention runs on any feature-map size.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, kaiming_init
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from .base import BackboneContract


def make_divisible(value: float,
                   divisor: int = 8,
                   min_value: Optional[int] = None,
                   round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going
    below ``round_limit * value`` (the MobileNet channel rounding rule)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


def _uib(out_channels, start_k, mid_k, stride, expand_ratio):
    return ('uib', out_channels, start_k, mid_k, stride, expand_ratio)


def _mqa(num_heads, key_dim, value_dim, kv_stride):
    return ('mqa', num_heads, key_dim, value_dim, kv_stride)


# Block specifications, per stage (strides 4, 8, 16, 32):
#   ('conv', out_channels, kernel, stride)
#   ('fused_ib', out_channels, kernel, stride, expand_ratio)
#   ('uib', out_channels, start_dw_kernel, middle_dw_kernel, stride,
#    expand_ratio)                                   (kernel 0 = no such conv)
#   ('mqa', num_heads, key_dim, value_dim, kv_stride)  (keeps the width)
_MQA_HM16 = _mqa(4, 64, 64, 2)
_MQA_HM32 = _mqa(4, 64, 64, 1)
_MQA_HL16 = _mqa(8, 48, 48, 2)
_MQA_HL32 = _mqa(8, 64, 64, 1)

ARCH_SETTINGS = {
    'conv_small': dict(
        stem_channels=32,
        act_cfg=dict(type='ReLU'),
        layer_scale_init_value=None,
        stages=[
            [('conv', 32, 3, 2), ('conv', 32, 1, 1)],
            [('conv', 96, 3, 2), ('conv', 64, 1, 1)],
            [_uib(96, 5, 5, 2, 3.0)] + [_uib(96, 0, 3, 1, 2.0)] * 4 +
            [_uib(96, 3, 0, 1, 4.0)],
            [_uib(128, 3, 3, 2, 6.0), _uib(128, 5, 5, 1, 4.0),
             _uib(128, 0, 5, 1, 4.0), _uib(128, 0, 5, 1, 3.0)] +
            [_uib(128, 0, 3, 1, 4.0)] * 2,
        ]),
    'conv_medium': dict(
        stem_channels=32,
        act_cfg=dict(type='ReLU'),
        layer_scale_init_value=None,
        stages=[
            [('fused_ib', 48, 3, 2, 4.0)],
            [_uib(80, 3, 5, 2, 4.0), _uib(80, 3, 3, 1, 2.0)],
            [_uib(160, 3, 5, 2, 6.0)] + [_uib(160, 3, 3, 1, 4.0)] * 2 +
            [_uib(160, 3, 5, 1, 4.0), _uib(160, 3, 3, 1, 4.0),
             _uib(160, 3, 0, 1, 4.0), _uib(160, 0, 0, 1, 2.0),
             _uib(160, 3, 0, 1, 4.0)],
            [_uib(256, 5, 5, 2, 6.0), _uib(256, 5, 5, 1, 4.0)] +
            [_uib(256, 3, 5, 1, 4.0)] * 2 +
            [_uib(256, 0, 0, 1, 4.0), _uib(256, 3, 0, 1, 4.0),
             _uib(256, 3, 5, 1, 2.0), _uib(256, 5, 5, 1, 4.0)] +
            [_uib(256, 0, 0, 1, 4.0)] * 2 + [_uib(256, 5, 0, 1, 2.0)],
        ]),
    'conv_large': dict(
        stem_channels=24,
        act_cfg=dict(type='ReLU'),
        layer_scale_init_value=None,
        stages=[
            [('fused_ib', 48, 3, 2, 4.0)],
            [_uib(96, 3, 5, 2, 4.0), _uib(96, 3, 3, 1, 4.0)],
            [_uib(192, 3, 5, 2, 4.0)] + [_uib(192, 3, 3, 1, 4.0)] * 3 +
            [_uib(192, 3, 5, 1, 4.0)] + [_uib(192, 5, 3, 1, 4.0)] * 5 +
            [_uib(192, 3, 0, 1, 4.0)],
            [_uib(512, 5, 5, 2, 4.0)] + [_uib(512, 5, 5, 1, 4.0)] * 3 +
            [_uib(512, 5, 0, 1, 4.0), _uib(512, 5, 3, 1, 4.0)] +
            [_uib(512, 5, 0, 1, 4.0)] * 2 +
            [_uib(512, 5, 3, 1, 4.0), _uib(512, 5, 5, 1, 4.0)] +
            [_uib(512, 5, 0, 1, 4.0)] * 3,
        ]),
    'hybrid_medium': dict(
        stem_channels=32,
        act_cfg=dict(type='ReLU'),
        layer_scale_init_value=1e-5,
        stages=[
            [('fused_ib', 48, 3, 2, 4.0)],
            [_uib(80, 3, 5, 2, 4.0), _uib(80, 3, 3, 1, 2.0)],
            [_uib(160, 3, 5, 2, 6.0), _uib(160, 0, 0, 1, 2.0),
             _uib(160, 3, 3, 1, 4.0), _uib(160, 3, 5, 1, 4.0),
             _MQA_HM16, _uib(160, 3, 3, 1, 4.0),
             _MQA_HM16, _uib(160, 3, 0, 1, 4.0),
             _MQA_HM16, _uib(160, 3, 3, 1, 4.0),
             _MQA_HM16, _uib(160, 3, 0, 1, 4.0)],
            [_uib(256, 5, 5, 2, 6.0), _uib(256, 5, 5, 1, 4.0)] +
            [_uib(256, 3, 5, 1, 4.0)] * 2 +
            [_uib(256, 0, 0, 1, 2.0), _uib(256, 3, 5, 1, 2.0),
             _uib(256, 0, 0, 1, 2.0), _uib(256, 0, 0, 1, 4.0),
             _MQA_HM32, _uib(256, 3, 0, 1, 4.0),
             _MQA_HM32, _uib(256, 5, 5, 1, 4.0),
             _MQA_HM32, _uib(256, 5, 0, 1, 4.0),
             _MQA_HM32, _uib(256, 5, 0, 1, 4.0)],
        ]),
    'hybrid_large': dict(
        stem_channels=24,
        act_cfg=dict(type='GELU'),
        layer_scale_init_value=1e-5,
        stages=[
            [('fused_ib', 48, 3, 2, 4.0)],
            [_uib(96, 3, 5, 2, 4.0), _uib(96, 3, 3, 1, 4.0)],
            [_uib(192, 3, 5, 2, 4.0)] + [_uib(192, 3, 3, 1, 4.0)] * 3 +
            [_uib(192, 3, 5, 1, 4.0)] + [_uib(192, 5, 3, 1, 4.0)] * 2 +
            [_MQA_HL16, _uib(192, 5, 3, 1, 4.0)] * 3 +
            [_MQA_HL16, _uib(192, 3, 0, 1, 4.0)],
            [_uib(512, 5, 5, 2, 4.0)] + [_uib(512, 5, 5, 1, 4.0)] * 3 +
            [_uib(512, 5, 0, 1, 4.0), _uib(512, 5, 3, 1, 4.0)] +
            [_uib(512, 5, 0, 1, 4.0)] * 2 +
            [_uib(512, 5, 3, 1, 4.0), _uib(512, 5, 5, 1, 4.0)] +
            [_MQA_HL32, _uib(512, 5, 0, 1, 4.0)] * 4,
        ]),
}

# TF's final 1x1 conv-BN-act layers (timm: ``blocks.4`` and ``conv_head``
# + ``norm_head``), applied at stride 32 when ``last_convs=True``.
LAST_CONV_CHANNELS = (960, 1280)


def _conv_norm_act(in_channels, out_channels, kernel_size, stride=1,
                   groups=1, norm_cfg=dict(type='BN'), act_cfg=None):
    """Bias-free conv with 'same'-style padding (output = ceil(in / stride)),
    norm and optional activation."""
    return ConvModule(
        in_channels, out_channels, kernel_size, stride=stride,
        padding=(kernel_size - 1) // 2, groups=groups, bias=False,
        norm_cfg=norm_cfg, act_cfg=act_cfg)


class LayerScale2d(nn.Module):
    """Learnable per-channel scale (CaiT, Touvron et al., ICCV 2021).

    (B, C, H, W) -> (B, C, H, W), ``x * gamma[None, :, None, None]``.
    """

    def __init__(self, channels: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels, ), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return x * self.gamma.view(1, -1, 1, 1)


class _ResidualMixin:
    """Optional layer scale, stochastic depth and identity shortcut."""

    def _init_residual(self, channels, use_shortcut, layer_scale_init_value,
                       drop_path_rate):
        self.use_shortcut = use_shortcut
        self.layer_scale = (
            LayerScale2d(channels, layer_scale_init_value)
            if layer_scale_init_value is not None else nn.Identity())
        self.drop_path = (
            DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity())

    def _residual(self, out, shortcut):
        out = self.layer_scale(out)
        if self.use_shortcut:
            out = shortcut + self.drop_path(out)
        return out


class FusedInvertedBottleneck(_ResidualMixin, BaseModule):
    """Fused IB: kxk conv-BN-act expansion then 1x1 conv-BN projection.

    (B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride));
    residual when ``stride == 1`` and ``C_in == C_out``.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_size: int, stride: int, expand_ratio: float,
                 norm_cfg: ConfigType, act_cfg: ConfigType,
                 layer_scale_init_value: Optional[float] = None,
                 drop_path_rate: float = 0.,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        mid = make_divisible(in_channels * expand_ratio)
        self.conv_exp = _conv_norm_act(in_channels, mid, kernel_size, stride,
                                       norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv_pwl = _conv_norm_act(mid, out_channels, 1, norm_cfg=norm_cfg)
        self._init_residual(out_channels,
                            stride == 1 and in_channels == out_channels,
                            layer_scale_init_value, drop_path_rate)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, ceil(H / s), ceil(W / s))."""
        return self._residual(self.conv_pwl(self.conv_exp(x)), x)


class UniversalInvertedBottleneck(_ResidualMixin, BaseModule):
    """Universal inverted bottleneck (UIB, MobileNetV4 Sec. 3.2).

    ``[dw_start (kxk dw conv-BN)] -> pw_exp (1x1 conv-BN-act) ->
    [dw_mid (kxk dw conv-BN-act)] -> pw_proj (1x1 conv-BN)``. The stride is
    applied by the middle depthwise conv if there is one, else by the start
    one. Kernel 0 removes a depthwise conv.

    (B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride));
    residual when ``stride == 1`` and ``C_in == C_out``.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 start_dw_kernel_size: int, middle_dw_kernel_size: int,
                 stride: int, expand_ratio: float, norm_cfg: ConfigType,
                 act_cfg: ConfigType,
                 layer_scale_init_value: Optional[float] = None,
                 drop_path_rate: float = 0.,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        if stride > 1 and not (start_dw_kernel_size or middle_dw_kernel_size):
            raise ValueError(
                f'UIB with stride {stride} needs a start or middle depthwise '
                f'conv, got kernels ({start_dw_kernel_size}, '
                f'{middle_dw_kernel_size})')
        mid = make_divisible(in_channels * expand_ratio)
        self.dw_start = nn.Identity()
        if start_dw_kernel_size:
            self.dw_start = _conv_norm_act(
                in_channels, in_channels, start_dw_kernel_size,
                1 if middle_dw_kernel_size else stride, groups=in_channels,
                norm_cfg=norm_cfg)
        self.pw_exp = _conv_norm_act(in_channels, mid, 1, norm_cfg=norm_cfg,
                                     act_cfg=act_cfg)
        self.dw_mid = nn.Identity()
        if middle_dw_kernel_size:
            self.dw_mid = _conv_norm_act(mid, mid, middle_dw_kernel_size,
                                         stride, groups=mid,
                                         norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.pw_proj = _conv_norm_act(mid, out_channels, 1, norm_cfg=norm_cfg)
        self._init_residual(out_channels,
                            stride == 1 and in_channels == out_channels,
                            layer_scale_init_value, drop_path_rate)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, ceil(H / s), ceil(W / s))."""
        out = self.pw_proj(self.dw_mid(self.pw_exp(self.dw_start(x))))
        return self._residual(out, x)


class MultiQueryAttention2d(BaseModule):
    """Multi-query attention with asymmetric spatial down-sampling.

    All ``num_heads`` query heads share one key head (``key_dim`` channels)
    and one value head (``value_dim`` channels). Keys and values are computed
    from the input down-sampled by a depthwise kxk conv + BN of stride
    ``kv_stride``; queries optionally from the input average-pooled by
    ``query_stride`` (then BN), in which case the attention output is
    bilinearly resized back to the input size before the output projection.

    Shapes: (B, C, H, W) -> (B, C, H, W) for any H, W. With
    ``N = ceil(H / query_stride) * ceil(W / query_stride)`` queries and
    ``M = ceil(H / kv_stride) * ceil(W / kv_stride)`` keys the attention map
    is (B, num_heads, N, M).
    """

    def __init__(self,
                 channels: int,
                 num_heads: int,
                 key_dim: int,
                 value_dim: int,
                 query_stride: int = 1,
                 kv_stride: int = 1,
                 dw_kernel_size: int = 3,
                 attn_drop: float = 0.,
                 norm_cfg: ConfigType = dict(type='BN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        for name, value in (('num_heads', num_heads), ('key_dim', key_dim),
                            ('value_dim', value_dim),
                            ('query_stride', query_stride),
                            ('kv_stride', kv_stride)):
            if int(value) < 1:
                raise ValueError(f'MultiQueryAttention2d {name} must be >= 1, '
                                 f'got {value}')
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.query_stride = query_stride
        self.kv_stride = kv_stride
        self.attn_drop = attn_drop
        if query_stride > 1:
            self.query_norm = build_norm_layer(norm_cfg, channels)[1]
        self.query_proj = nn.Conv2d(channels, num_heads * key_dim, 1,
                                    bias=False)
        if kv_stride > 1:
            self.key_down = _conv_norm_act(channels, channels, dw_kernel_size,
                                           kv_stride, groups=channels,
                                           norm_cfg=norm_cfg)
            self.value_down = _conv_norm_act(channels, channels,
                                             dw_kernel_size, kv_stride,
                                             groups=channels,
                                             norm_cfg=norm_cfg)
        self.key_proj = nn.Conv2d(channels, key_dim, 1, bias=False)
        self.value_proj = nn.Conv2d(channels, value_dim, 1, bias=False)
        self.out_proj = nn.Conv2d(num_heads * value_dim, channels, 1,
                                  bias=False)

    def reset_parameters(self) -> None:
        """Xavier-uniform projections (as timm, for stable hybrid training)."""
        convs = [self.query_proj, self.key_proj, self.value_proj,
                 self.out_proj]
        if self.kv_stride > 1:
            convs += [self.key_down.conv, self.value_down.conv]
        for conv in convs:
            nn.init.xavier_uniform_(conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        batch, _, height, width = x.shape
        query = x
        if self.query_stride > 1:
            query = self.query_norm(
                F.avg_pool2d(x, self.query_stride, self.query_stride,
                             ceil_mode=True))
        query = self.query_proj(query)
        q_height, q_width = query.shape[-2:]
        # (B, heads * dk, h, w) -> (B, heads, N, dk); channel = head * dk + d.
        query = query.reshape(batch, self.num_heads, self.key_dim, -1)
        query = query.transpose(-1, -2)
        key_in = self.key_down(x) if self.kv_stride > 1 else x
        value_in = self.value_down(x) if self.kv_stride > 1 else x
        # (B, d, m_h, m_w) -> (B, 1, M, d), shared by every head.
        key = self.key_proj(key_in).flatten(2).transpose(1, 2).unsqueeze(1)
        value = self.value_proj(value_in).flatten(2).transpose(1, 2)
        value = value.unsqueeze(1)
        out = F.scaled_dot_product_attention(
            query, key.expand(-1, self.num_heads, -1, -1),
            value.expand(-1, self.num_heads, -1, -1),
            dropout_p=self.attn_drop if self.training else 0.)
        # (B, heads, N, dv) -> (B, heads * dv, h, w).
        out = out.transpose(-1, -2).reshape(batch, -1, q_height, q_width)
        if (q_height, q_width) != (height, width):
            out = F.interpolate(out, size=(height, width), mode='bilinear',
                                align_corners=False)
        return self.out_proj(out)


class MobileMQABlock(_ResidualMixin, BaseModule):
    """Mobile MQA block: ``x + layer_scale(MQA(BN(x)))``.

    (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self,
                 channels: int,
                 num_heads: int,
                 key_dim: int,
                 value_dim: int,
                 kv_stride: int,
                 norm_cfg: ConfigType,
                 query_stride: int = 1,
                 dw_kernel_size: int = 3,
                 layer_scale_init_value: Optional[float] = None,
                 drop_path_rate: float = 0.,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        self.norm = build_norm_layer(norm_cfg, channels)[1]
        self.attn = MultiQueryAttention2d(
            channels, num_heads, key_dim, value_dim, query_stride, kv_stride,
            dw_kernel_size, norm_cfg=norm_cfg)
        self._init_residual(channels, True, layer_scale_init_value,
                            drop_path_rate)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return self._residual(self.attn(self.norm(x)), x)


@MODELS.register_module()
class MobileNetV4(BackboneContract, BaseModule):
    """MobileNetV4 (Qin et al., ECCV 2024) as an mmdet backbone.

    Stem (3x3 s2 conv-BN-act) and four stages at strides 4/8/16/32. With
    ``last_convs=True`` (default, as TF's ``layer5`` and the blog post's
    backbone) the stride-32 stage ends with 1x1 conv-BN-act layers to 960
    and 1280 channels; the ImageNet classifier is never built.

    Args:
        arch (str | dict): ``'conv_small'``, ``'conv_medium'``,
            ``'conv_large'``, ``'hybrid_medium'``, ``'hybrid_large'`` or a
            dict with ``stem_channels``, ``stages`` (see ``ARCH_SETTINGS``),
            ``act_cfg`` and ``layer_scale_init_value`` (None: no layer
            scale).
        out_indices (Sequence[int]): Stages to output (0-based, negatives
            count from the end; strides 4/8/16/32).
        last_convs (bool): Append the 960/1280-channel 1x1 convs to stage 3.
        frozen_stages (int): Freeze the stem (0) and the first
            ``frozen_stages`` stages; -1 freezes nothing.
        norm_eval (bool): Keep BN layers in eval mode while training.
        norm_cfg (dict): Norm layer. Defaults to ``dict(type='BN')``.
        act_cfg (dict, optional): Overrides the arch's activation.
        drop_path_rate (float): Stochastic depth, increasing linearly over
            the blocks to this value.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=...)`` loads a checkpoint in this layout or in timm's
            ``mobilenetv4_*`` layout (converted by
            :func:`convert_timm_mobilenetv4`).

    Shapes: (B, 3, H, W) -> tuple of (B, out_channels[i], ceil(H / s_i),
    ceil(W / s_i)) for ``s_i`` in ``out_strides``.
    """

    smallest_cfg = dict(arch='conv_small')

    def __init__(self,
                 arch: Union[str, dict] = 'conv_small',
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 last_convs: bool = True,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: ConfigType = dict(type='BN'),
                 act_cfg: OptConfigType = None,
                 drop_path_rate: float = 0.,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        if isinstance(arch, str):
            if arch not in ARCH_SETTINGS:
                raise ValueError(
                    f'MobileNetV4 arch must be one of {sorted(ARCH_SETTINGS)} '
                    f'or a dict, got {arch!r}')
            arch = ARCH_SETTINGS[arch]
        missing = {'stem_channels', 'stages'} - set(arch)
        if missing:
            raise KeyError(f'MobileNetV4 arch dict lacks {sorted(missing)}')
        stages = arch['stages']
        self.set_stage_args(out_indices, frozen_stages, norm_eval,
                            len(stages))
        act_cfg = act_cfg or arch.get('act_cfg', dict(type='ReLU'))
        layer_scale = arch.get('layer_scale_init_value')
        self.last_convs = None

        channels = arch['stem_channels']
        self.stem = _conv_norm_act(3, channels, 3, 2, norm_cfg=norm_cfg,
                                   act_cfg=act_cfg)
        num_blocks = sum(len(stage) for stage in stages)
        rates = torch.linspace(0, drop_path_rate, max(num_blocks, 1)).tolist()
        self.stages = nn.ModuleList()
        stage_channels = []
        block_idx = 0
        for stage_spec in stages:
            blocks = []
            for spec in stage_spec:
                block, channels = self._make_block(
                    spec, channels, norm_cfg, act_cfg, layer_scale,
                    rates[block_idx])
                blocks.append(block)
                block_idx += 1
            self.stages.append(nn.Sequential(*blocks))
            stage_channels.append(channels)
        if last_convs:
            convs = []
            for width in LAST_CONV_CHANNELS:
                convs.append(_conv_norm_act(channels, width, 1,
                                            norm_cfg=norm_cfg,
                                            act_cfg=act_cfg))
                channels = width
            self.last_convs = nn.Sequential(*convs)
            stage_channels[-1] = channels
        self.set_feature_info(stage_channels, (4, 8, 16, 32))
        self.apply_frozen_stages()

    @staticmethod
    def _make_block(spec, in_channels, norm_cfg, act_cfg, layer_scale,
                    drop_path_rate):
        kind, args = spec[0], spec[1:]
        if kind == 'conv':
            out_channels, kernel, stride = args
            return _conv_norm_act(in_channels, out_channels, kernel, stride,
                                  norm_cfg=norm_cfg,
                                  act_cfg=act_cfg), out_channels
        if kind == 'fused_ib':
            out_channels, kernel, stride, expand = args
            return FusedInvertedBottleneck(
                in_channels, out_channels, kernel, stride, expand, norm_cfg,
                act_cfg, drop_path_rate=drop_path_rate), out_channels
        if kind == 'uib':
            out_channels, start_k, mid_k, stride, expand = args
            return UniversalInvertedBottleneck(
                in_channels, out_channels, start_k, mid_k, stride, expand,
                norm_cfg, act_cfg, layer_scale, drop_path_rate), out_channels
        if kind == 'mqa':
            num_heads, key_dim, value_dim, kv_stride = args
            return MobileMQABlock(
                in_channels, num_heads, key_dim, value_dim, kv_stride,
                norm_cfg, layer_scale_init_value=layer_scale,
                drop_path_rate=drop_path_rate), in_channels
        raise ValueError(
            f'MobileNetV4 block type must be conv, fused_ib, uib or mqa, got '
            f'{kind!r} in spec {spec}')

    def stage_module_names(self) -> Tuple[List[str], List[List[str]]]:
        """The last stage includes ``last_convs``."""
        stem, stages = super().stage_module_names()
        if self.last_convs is not None:
            stages[-1].append('last_convs')
        return stem, stages

    def default_init(self) -> None:
        """Kaiming (fan-out) convs, unit BN, Xavier attention projections."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                kaiming_init(module, mode='fan_out', nonlinearity='relu')
            elif isinstance(module, _BatchNorm):
                constant_init(module, 1.0, bias=0.0)
        for module in self.modules():
            if isinstance(module, MultiQueryAttention2d):
                module.reset_parameters()

    def convert_pretrained(
            self, state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Accept timm ``mobilenetv4_*`` checkpoints (key mapping)."""
        if is_timm_mobilenetv4_layout(state_dict):
            return convert_timm_mobilenetv4(state_dict)
        return state_dict

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """(B, 3, H, W) -> the ``out_indices`` stage outputs; the last
        stage's output is taken after ``last_convs``."""
        x = self.stem(x)
        outs = []
        for i in range(self.out_indices[-1] + 1):
            x = self.stages[i](x)
            if i == len(self.stages) - 1 and self.last_convs is not None:
                x = self.last_convs(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


def is_timm_mobilenetv4_layout(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether a state dict uses timm's ``MobileNetV3`` key names."""
    return any(k.startswith(('conv_stem.', 'blocks.')) for k in state_dict)


# timm suffix -> ours, inside one block (``blocks.s.b.``).
_TIMM_BLOCK_RULES = [
    # conv-BN-act block ('cn') and FusedIB ('er', its ``bn1`` is handled by
    # the caller).
    (r'conv\.weight$', 'conv.weight'),
    (r'bn1\.(.+)$', r'bn.\1'),
    (r'conv_exp\.weight$', 'conv_exp.conv.weight'),
    (r'conv_pwl\.weight$', 'conv_pwl.conv.weight'),
    (r'bn2\.(.+)$', r'conv_pwl.bn.\1'),
    # Mobile MQA ('mqa').
    (r'attn\.query\.norm\.(.+)$', r'attn.query_norm.\1'),
    (r'attn\.query\.proj\.weight$', 'attn.query_proj.weight'),
    (r'attn\.(key|value)\.down_conv\.weight$', r'attn.\1_down.conv.weight'),
    (r'attn\.(key|value)\.norm\.(.+)$', r'attn.\1_down.bn.\2'),
    (r'attn\.(key|value)\.proj\.weight$', r'attn.\1_proj.weight'),
    (r'attn\.output\.proj\.weight$', 'attn.out_proj.weight'),
    # UIB ('uir') and the remaining MQA keys keep their names.
    (r'((dw_start|pw_exp|dw_mid|pw_proj|conv_exp)\.(conv|bn)\..+'
     r'|layer_scale\.gamma|norm\..+)$', r'\1'),
]


def convert_timm_mobilenetv4(
        state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Map a timm ``mobilenetv4_*`` state dict onto :class:`MobileNetV4`.

    ``conv_stem``/``bn1`` -> ``stem.conv``/``stem.bn``;
    ``blocks.s.b.*`` (s < 4) -> ``stages.s.b.*`` (``bn1`` -> ``bn``; FusedIB
    ``conv_exp``/``bn1``/``conv_pwl``/``bn2`` -> ``conv_exp.{conv,bn}``/
    ``conv_pwl.{conv,bn}``; MQA ``attn.query.proj`` -> ``attn.query_proj``,
    ``attn.{key,value}.{down_conv,norm,proj}`` ->
    ``attn.{key,value}_down.{conv,bn}``/``attn.{key,value}_proj``,
    ``attn.output.proj`` -> ``attn.out_proj``); ``blocks.4.0`` ->
    ``last_convs.0``; ``conv_head``/``norm_head`` -> ``last_convs.1``. The
    ImageNet ``classifier`` is dropped; unknown keys are kept so that loading
    reports them as unexpected.
    """
    fused_blocks = set()
    for key in state_dict:
        match = re.match(r'(blocks\.\d+\.\d+)\.conv_exp\.weight$', key)
        if match:
            fused_blocks.add(match.group(1))
    converted = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('classifier.'):
            continue
        match = re.match(r'(blocks\.\d+\.\d+)\.bn1\.(.+)$', key)
        if match and match.group(1) in fused_blocks:
            key = f'{match.group(1)}.conv_exp.bn.{match.group(2)}'
        new_key = _convert_timm_key(key)
        converted[new_key if new_key is not None else key] = value
    return converted


def _convert_timm_key(key):
    match = re.match(r'conv_stem\.weight$', key)
    if match:
        return 'stem.conv.weight'
    match = re.match(r'bn1\.(.+)$', key)
    if match:
        return f'stem.bn.{match.group(1)}'
    match = re.match(r'conv_head\.weight$', key)
    if match:
        return 'last_convs.1.conv.weight'
    match = re.match(r'norm_head\.(.+)$', key)
    if match:
        return f'last_convs.1.bn.{match.group(1)}'
    match = re.match(r'blocks\.(\d+)\.(\d+)\.(.+)$', key)
    if not match:
        return None
    stage, block, rest = match.groups()
    base = ('last_convs.0.' if stage == '4' and block == '0' else
            f'stages.{stage}.{block}.')
    for pattern, repl in _TIMM_BLOCK_RULES:
        if re.match(pattern, rest):
            return base + re.sub(pattern, repl, rest)
    return None
