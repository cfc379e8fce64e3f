"""BHViT's multi-scale token mixer (MSGDC) and the CCRI CSP block.

BHViT (Gao et al., "BHViT: Binarized Hybrid Vision Transformer", CVPR 2025,
https://arxiv.org/abs/2503.02394) mixes tokens in its early stages with a
multi-scale grouped dilated convolution (MSGDC): a learnable per-channel shift,
three parallel grouped 3x3 convolutions with dilations 1, 3 and 5, each
followed by RPReLU (ReActNet's PReLU with learnable shifts before and after),
summed and layer-normalised. The paper binarises the convolutions; here they
are full precision.

``CCRI`` and its signature ``(c1, c2, k, n, lightconv, shortcut, scale, e,
act)`` come from a blog post that fuses MSGDC into RT-DETR; its code is not
public, so the block below is our own design (documented in docs/bhvit.md):
a C2f-style cross-stage-partial block whose bottlenecks are small MetaFormer
blocks (a spatial token mixer, MSGDC or RepConv, then a channel MLP).
"""
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from .csp_layers import RepVGGBlock

MIXERS = ('msgdc', 'repconv')


def resolve_act_cfg(act: Union[bool, None, dict]) -> Optional[dict]:
    """Ultralytics-style ``act`` to an mmcv ``act_cfg``.

    ``True`` -> SiLU, ``False``/``None`` -> no activation, a dict is an mmcv
    activation config used as is.
    """
    if act is True:
        return dict(type='SiLU')
    if act is False or act is None:
        return None
    if isinstance(act, dict):
        return act
    raise ValueError(
        f'act must be True (SiLU), False/None (identity) or an activation '
        f'config dict, got {act!r}')


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of every position of a (B, C, H, W) map.

    The same function as BHViT's ``nn.LayerNorm(C)`` applied to the
    (B, H*W, C) token sequence, without reshaping to tokens. Subclassing
    ``nn.LayerNorm`` lets optimiser constructors treat it as a norm layer.
    """

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def build_mixer_norm(norm_cfg: ConfigType, num_channels: int) -> nn.Module:
    """``type='LN'`` -> :class:`ChannelLayerNorm`; else mmcv's norm layer."""
    cfg = dict(norm_cfg)
    if cfg.get('type') == 'LN':
        cfg.pop('type')
        return ChannelLayerNorm(num_channels, **cfg)
    return build_norm_layer(cfg, num_channels)[1]


class LearnableShift(nn.Module):
    """``x + b`` with a learnable per-channel bias ``b`` (initialised to 0)."""

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, num_channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return x + self.bias


class RPReLU(nn.Module):
    """RPReLU (Liu et al., "ReActNet", ECCV 2020): ``PReLU(x - g) + z``.

    ``g`` and ``z`` are learnable per-channel shifts (initialised to 0), the
    PReLU slope is per channel (initialised to 0.25). (B, C, H, W) -> same.
    """

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.shift_in = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.prelu = nn.PReLU(num_channels)
        self.shift_out = nn.Parameter(torch.zeros(1, num_channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return self.prelu(x - self.shift_in) + self.shift_out


@MODELS.register_module()
class MSGDC(BaseModule):
    """Multi-scale grouped dilated convolution, BHViT's token mixer.

    ``y = Norm(sum_d RPReLU_d(Conv_d(x + s)))`` where ``s`` is a learnable
    per-channel shift and ``Conv_d`` is a ``kernel_size`` x ``kernel_size``
    convolution with ``groups`` groups, dilation ``d``, bias and "same"
    padding ``d * (kernel_size - 1) // 2``, for ``d`` in ``dilations``.

    Args:
        in_channels (int): Channels C (input and output); must be divisible
            by ``groups``.
        kernel_size (int): Odd kernel size of the branches. Defaults to 3.
        dilations (Sequence[int]): One branch per dilation.
            Defaults to (1, 3, 5).
        groups (int): Groups of every branch convolution. Defaults to 4.
        norm_cfg (dict): Norm after the sum. ``type='LN'`` (default, as the
            paper) is a LayerNorm over the channels at every position
            (batch-size independent, eps 1e-6); any other mmcv norm config
            (``BN``, ``SyncBN``, ``GN``...) is built by ``build_norm_layer``.

    Shapes: (B, C, H, W) -> (B, C, H, W) for any H, W.
    """

    def __init__(self,
                 in_channels: int,
                 kernel_size: int = 3,
                 dilations: Sequence[int] = (1, 3, 5),
                 groups: int = 4,
                 norm_cfg: ConfigType = dict(type='LN', eps=1e-6),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        if in_channels % groups:
            raise ValueError(
                f'MSGDC in_channels ({in_channels}) must be divisible by '
                f'groups ({groups})')
        if kernel_size % 2 == 0:
            raise ValueError(
                f'MSGDC kernel_size must be odd for "same" padding, got '
                f'{kernel_size}')
        if not dilations:
            raise ValueError('MSGDC needs at least one dilation')
        self.in_channels = in_channels
        self.shift = LearnableShift(in_channels)
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, in_channels, kernel_size,
                      padding=d * (kernel_size - 1) // 2, dilation=d,
                      groups=groups, bias=True) for d in dilations)
        self.acts = nn.ModuleList(RPReLU(in_channels) for _ in dilations)
        self.norm = build_mixer_norm(norm_cfg, in_channels)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'MSGDC expects (B, {self.in_channels}, H, W), got '
                f'{tuple(x.shape)}')
        x = self.shift(x)
        out = sum(act(conv(x)) for conv, act in zip(self.branches, self.acts))
        return self.norm(out)


@MODELS.register_module()
class MSGDCBottleneck(BaseModule):
    """MetaFormer-style bottleneck: a spatial token mixer then a channel MLP.

    ``y = x + Mixer(x)``; ``out = y + MLP(y)`` (each ``+`` only with
    ``shortcut``; the second also needs ``in_channels == out_channels``).
    ``MLP`` is 1x1 conv-BN-act to ``round(out_channels * mlp_ratio)`` then
    1x1 conv-BN to ``out_channels``.

    It takes ``in_channels``/``out_channels``, so it can replace RepVGG in
    :class:`CSPRepLayer` (``block_cfg=dict(type='MSGDCBottleneck')``) and
    thus in the hybrid encoder (``csp_block_cfg``).

    Args:
        in_channels (int): Input channels C_in.
        out_channels (int): Output channels C_out.
        kernel_size (int): Kernel of the mixer (RepConv supports only 3).
        mixer (str): ``'msgdc'`` (:class:`MSGDC`, C_in divisible by 4) or
            ``'repconv'`` (:class:`RepVGGBlock`, 3x3 + 1x1, foldable).
        shortcut (bool): Residual connections. Defaults to True.
        mlp_ratio (float): MLP hidden width / C_out. Defaults to 2.0.
        act_cfg (dict, optional): Activation of the MLP and the RepConv.
        norm_cfg (dict): Norm of the MLP convs and of the RepConv mixer.
            Defaults to BN.
        mixer_norm_cfg (dict): Norm of :class:`MSGDC`. Defaults to LN.

    Shapes: (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 3,
                 mixer: str = 'msgdc',
                 shortcut: bool = True,
                 mlp_ratio: float = 2.0,
                 act_cfg: OptConfigType = dict(type='SiLU'),
                 norm_cfg: ConfigType = dict(type='BN'),
                 mixer_norm_cfg: ConfigType = dict(type='LN', eps=1e-6),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        if mixer not in MIXERS:
            raise ValueError(
                f'MSGDCBottleneck mixer must be one of {MIXERS}, got '
                f'{mixer!r}')
        if mlp_ratio <= 0:
            raise ValueError(
                f'MSGDCBottleneck mlp_ratio must be > 0, got {mlp_ratio}')
        if mixer == 'msgdc':
            self.mixer = MSGDC(in_channels, kernel_size,
                               norm_cfg=mixer_norm_cfg)
        else:
            if kernel_size != 3:
                raise ValueError(
                    f'the RepConv mixer is 3x3 + 1x1 (RepVGG); kernel_size '
                    f'must be 3, got {kernel_size}')
            self.mixer = RepVGGBlock(in_channels, in_channels, act_cfg=act_cfg,
                                     norm_cfg=norm_cfg)
        hidden = max(1, round(out_channels * mlp_ratio))
        self.mlp = nn.Sequential(
            ConvModule(in_channels, hidden, 1, norm_cfg=norm_cfg,
                       act_cfg=act_cfg),
            ConvModule(hidden, out_channels, 1, norm_cfg=norm_cfg,
                       act_cfg=None))
        self.shortcut = shortcut
        self.mlp_residual = shortcut and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        y = self.mixer(x)
        if self.shortcut:
            y = x + y
        out = self.mlp(y)
        return y + out if self.mlp_residual else out


@MODELS.register_module()
class CCRI(BaseModule):
    """CSP block of MSGDC / RepConv bottlenecks (the blog post's ``CCRI``).

    ``a, b = split(cv1(x))``; ``b_i = Bottleneck_i(b_{i-1})`` for i = 1..n;
    ``out = cv2(concat(a, b_0, b_1, ..., b_n))`` (C2f-style dense concat).

    Args (the blog's signature, in its order):
        c1 (int): Input channels.
        c2 (int): Output channels.
        k (int): Kernel size of the bottlenecks' spatial mixer (the MSGDC
            branches; the RepConv mixer only supports 3). Defaults to 3.
        n (int): Number of chained bottlenecks (>= 1). Defaults to 1.
        lightconv (bool): Mixer of the bottlenecks: True -> :class:`MSGDC`
            (grouped dilated, 3/4 of a dense kxk conv's weights), False ->
            RepConv (:class:`RepVGGBlock`). Defaults to False.
        shortcut (bool): Residual connections inside the bottlenecks.
            Defaults to False.
        scale (float): MLP expansion of every bottleneck (its hidden width
            is ``scale`` x the CSP width). Defaults to 2.0.
        e (float): CSP expansion: ``cv1`` is a 1x1 conv to ``2 * c_`` with
            ``c_ = int(c2 * e)``, split into two halves of ``c_``.
            Defaults to 0.5.
        act (bool | dict): Activation of ``cv1``, ``cv2``, the MLPs and the
            RepConv: True -> SiLU, False -> none, a dict -> that mmcv
            activation config. Defaults to True.
        norm_cfg (dict): Norm of the convs. Defaults to BN.
        mixer_norm_cfg (dict): Norm inside :class:`MSGDC`. Defaults to LN.

    Shapes: (B, c1, H, W) -> (B, c2, H, W).
    """

    def __init__(self,
                 c1: int,
                 c2: int,
                 k: int = 3,
                 n: int = 1,
                 lightconv: bool = False,
                 shortcut: bool = False,
                 scale: float = 2.0,
                 e: float = 0.5,
                 act: Union[bool, dict] = True,
                 norm_cfg: ConfigType = dict(type='BN'),
                 mixer_norm_cfg: ConfigType = dict(type='LN', eps=1e-6),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        if n < 1:
            raise ValueError(f'CCRI n (number of bottlenecks) must be >= 1, '
                             f'got {n}')
        hidden = int(c2 * e)
        if hidden < 1:
            raise ValueError(f'CCRI hidden width int(c2 * e) = int({c2} * {e})'
                             f' must be >= 1')
        if lightconv and hidden % 4:
            raise ValueError(
                f'CCRI with lightconv=True (MSGDC, groups=4) needs the hidden '
                f'width int(c2 * e) = {hidden} (c2={c2}, e={e}) divisible by '
                f'4')
        act_cfg = resolve_act_cfg(act)
        self.hidden = hidden
        self.cv1 = ConvModule(c1, 2 * hidden, 1, norm_cfg=norm_cfg,
                              act_cfg=act_cfg)
        self.blocks = nn.ModuleList(
            MSGDCBottleneck(hidden, hidden, k,
                            mixer='msgdc' if lightconv else 'repconv',
                            shortcut=shortcut, mlp_ratio=scale,
                            act_cfg=act_cfg, norm_cfg=norm_cfg,
                            mixer_norm_cfg=mixer_norm_cfg) for _ in range(n))
        self.cv2 = ConvModule((2 + n) * hidden, c2, 1, norm_cfg=norm_cfg,
                              act_cfg=act_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """(B, c1, H, W) -> (B, c2, H, W)."""
        outs = list(self.cv1(x).split(self.hidden, dim=1))
        for block in self.blocks:
            outs.append(block(outs[-1]))
        return self.cv2(torch.cat(outs, dim=1))
