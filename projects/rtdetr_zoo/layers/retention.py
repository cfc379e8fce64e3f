"""Manhattan self-attention (MaSA) and the RMT block.

Fan et al., "RMT: Retentive Networks Meet Vision Transformers" (CVPR 2024).
MaSA adds an explicit spatial prior to softmax attention: the attention
logit between tokens ``p = (y, x)`` and ``p' = (y', x')`` of head ``n`` is
biased by ``|y - y'| + |x - x'|`` times ``log(gamma_n)``, i.e. the attention
weights are multiplied by ``gamma_n ** manhattan(p, p')`` before the softmax
normalisation. The decomposed form attends along the width and then along
the height with 1D decays ``gamma_n ** |x - x'|`` and ``gamma_n ** |y - y'|``,
which keeps the receptive-field shape of full MaSA at linear-in-side cost.

Every tensor inside a stage is channels-last, (B, H, W, C), as in the
official implementation; the depthwise convolutions permute internally.
"""
from collections import OrderedDict
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from torch import Tensor

from mmdet.utils import ConfigType, OptConfigType

#: What :class:`ManhattanDecay` returns for one feature size:
#: ``(rotation, mask)``, ``rotation`` None or ``(sin, cos)`` of shape
#: (H, W, C / n), ``mask`` ``(mask_h, mask_w)`` of shapes (n, H, H) and
#: (n, W, W) when decomposed, else one (n, HW, HW) tensor.
DecayMasks = Tuple[Optional[Tuple[Tensor, Tensor]],
                   Union[Tensor, Tuple[Tensor, Tensor]]]


def conv_norm_act(in_channels: int,
                  out_channels: int,
                  stride: int,
                  norm_cfg: ConfigType,
                  act_cfg: OptConfigType = None) -> nn.Sequential:
    """3x3 conv (with bias, as in the official RMT) -> norm -> optional act.

    Children are named ``conv``, the norm's mmcv name (``bn`` for BN/SyncBN)
    and ``act``; the norm's name is also stored as ``.norm_name``.
    (B, C_in, H, W) -> (B, C_out, ceil(H / s), ceil(W / s)).
    """
    norm_name, norm = build_norm_layer(norm_cfg, out_channels)
    layers = [('conv', nn.Conv2d(in_channels, out_channels, 3, stride, 1)),
              (norm_name, norm)]
    if act_cfg is not None:
        layers.append(('act', build_activation_layer(act_cfg)))
    block = nn.Sequential(OrderedDict(layers))
    block.norm_name = norm_name
    return block


class DepthwiseConvNHWC(nn.Conv2d):
    """Depthwise ``k x k`` conv (stride 1, same padding) on (B, H, W, C)."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__(channels, channels, kernel_size, 1,
                         kernel_size // 2, groups=channels)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        return super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class ManhattanDecay(nn.Module):
    """Per-head spatial decay masks (and xPos rotation) of one RMT stage.

    ``gamma_n = 1 - 2 ** (-init_value - heads_range * n / num_heads)``; the
    masks hold ``distance * log(gamma_n)`` and are added to the logits.
    Masks and rotation tables are built once per feature size and kept in a
    small LRU cache (they depend only on (H, W) and the device), so a stage
    does not rebuild them every forward.

    Args:
        embed_dims (int): Channels C of the stage.
        num_heads (int): Heads n.
        init_value (float): ``init_value`` of the decay (2 in every arch).
        heads_range (float): Spread of the decay rates across heads.
        decomposed (bool): Build 1D masks (n, H, H) and (n, W, W) for the
            decomposed MaSA instead of the full (n, HW, HW) mask.
        use_rope (bool): Also build the sin/cos tables of the official
            implementation's xPos-style rotation of q and k, (H, W, C / n).
        cache_size (int): Feature sizes kept in the cache.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 init_value: float,
                 heads_range: float,
                 decomposed: bool,
                 use_rope: bool = True,
                 cache_size: int = 4) -> None:
        super().__init__()
        head_dims = embed_dims // num_heads
        if use_rope and head_dims % 2:
            raise ValueError(
                f'use_rope needs an even head dimension, got embed_dims='
                f'{embed_dims} / num_heads={num_heads} = {head_dims}')
        if cache_size < 1:
            raise ValueError(f'cache_size must be >= 1, got {cache_size}')
        heads = torch.arange(num_heads, dtype=torch.float32)
        decay = torch.log(
            1 - 2**(-init_value - heads_range * heads / num_heads))
        self.register_buffer('decay', decay, persistent=False)
        if use_rope:
            angle = 1.0 / (10000**torch.linspace(0, 1, head_dims // 2))
            self.register_buffer(
                'angle', angle.repeat_interleave(2), persistent=False)
        else:
            self.angle = None
        self.decomposed = decomposed
        self.cache_size = cache_size
        self._cache = OrderedDict()

    def _linear_decay(self, length):
        index = torch.arange(length, device=self.decay.device,
                             dtype=self.decay.dtype)
        distance = (index[:, None] - index[None, :]).abs()
        return distance[None] * self.decay[:, None, None]

    def _build(self, height, width):
        if self.decomposed:
            mask = (self._linear_decay(height), self._linear_decay(width))
        else:
            ys, xs = torch.meshgrid(
                torch.arange(height, device=self.decay.device),
                torch.arange(width, device=self.decay.device), indexing='ij')
            ys, xs = ys.reshape(-1), xs.reshape(-1)
            distance = ((ys[:, None] - ys[None, :]).abs() +
                        (xs[:, None] - xs[None, :]).abs()).to(self.decay)
            mask = distance[None] * self.decay[:, None, None]
        if self.angle is None:
            return None, mask
        index = torch.arange(height * width, device=self.decay.device,
                             dtype=self.decay.dtype)
        theta = (index[:, None] * self.angle[None, :]).reshape(
            height, width, -1)
        return (theta.sin(), theta.cos()), mask

    def forward(self, height: int, width: int) -> DecayMasks:
        """Return ``(rotation, mask)`` for an (H, W) map.

        ``rotation`` is None or ``(sin, cos)`` of shape (H, W, C / n);
        ``mask`` is ``(mask_h, mask_w)`` of shapes (n, H, H), (n, W, W) when
        decomposed, else a (n, HW, HW) tensor.
        """
        key = (height, width, self.decay.device)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = self._build(height, width)
        self._cache[key] = value
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return value


def rotate_pairs(x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
    """xPos/RoPE rotation of consecutive channel pairs of (..., H, W, d)."""
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), -1).flatten(-2)
    return x * cos + rotated * sin


def _attend(q, k, v, mask):
    """softmax(q k^T / sqrt(d) + mask) v over the last two dims.

    ``F.scaled_dot_product_attention`` fuses the mask add and the softmax
    (no (L, L) weight matrix kept for backward on the fused kernels);
    ``rtdetr_zoo.analysis.flops`` gives the FLOP counter a handle for it.
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class MaSA(nn.Module):
    """Manhattan self-attention with local context enhancement (LCE).

    LCE adds a 5x5 depthwise conv of V to the attention output before the
    output projection.

    Args:
        embed_dims (int): Channels C.
        num_heads (int): Heads n (C must be divisible by n).
        decomposed (bool): Attend along W then along H with 1D decays
            (O(HW(H + W)) memory) instead of over all HW tokens.

    Shapes: x (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, embed_dims: int, num_heads: int,
                 decomposed: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.decomposed = decomposed
        self.q_proj = nn.Linear(embed_dims, embed_dims)
        self.k_proj = nn.Linear(embed_dims, embed_dims)
        self.v_proj = nn.Linear(embed_dims, embed_dims)
        self.lce = DepthwiseConvNHWC(embed_dims, 5)
        self.out_proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: Tensor, decay: DecayMasks) -> Tensor:
        """x (B, H, W, C) and the stage's :class:`ManhattanDecay` output
        -> (B, H, W, C)."""
        rotation, mask = decay
        b, h, w, c = x.shape
        n, d = self.num_heads, self.head_dims
        q = self.q_proj(x)
        k = self.k_proj(x)
        v = self.v_proj(x)
        lce = self.lce(v)
        # (B, n, H, W, d)
        q = q.view(b, h, w, n, d).permute(0, 3, 1, 2, 4)
        k = k.view(b, h, w, n, d).permute(0, 3, 1, 2, 4)
        v = v.view(b, h, w, n, d).permute(0, 3, 1, 2, 4)
        if rotation is not None:
            sin, cos = (t.to(q.dtype) for t in rotation)
            q = rotate_pairs(q, sin, cos)
            k = rotate_pairs(k, sin, cos)
        if self.decomposed:
            mask_h, mask_w = (m.to(q.dtype) for m in mask)
            # Along W, rows independent: (B * H, n, W, d).
            rows = (t.transpose(1, 2).reshape(b * h, n, w, d)
                    for t in (q, k, v))
            out = _attend(*rows, mask_w[None]).view(b, h, n, w, d)
            # Along H on the row-mixed values: (B * W, n, H, d).
            q, k = (t.permute(0, 3, 1, 2, 4).reshape(b * w, n, h, d)
                    for t in (q, k))
            v = out.permute(0, 3, 2, 1, 4).reshape(b * w, n, h, d)
            out = _attend(q, k, v, mask_h[None]).view(b, w, n, h, d)
            out = out.permute(0, 3, 1, 2, 4)
        else:
            out = _attend(q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3),
                          mask.to(q.dtype)[None])
            out = out.view(b, n, h, w, d).permute(0, 2, 3, 1, 4)
        out = out.reshape(b, h, w, c) + lce
        return self.out_proj(out)


class RetentionFFN(nn.Module):
    """fc1 -> GELU -> (+ 3x3 depthwise conv, residual) -> fc2 on (B, H, W, C).

    The depthwise conv is part of the official RMT (``subconv``); the blog's
    copy disables it (``dwconv=False``).
    """

    def __init__(self, embed_dims: int, hidden_dims: int,
                 dwconv: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.act = nn.GELU()
        self.dwconv = DepthwiseConvNHWC(hidden_dims, 3) if dwconv else None
        self.fc2 = nn.Linear(hidden_dims, embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        x = self.act(self.fc1(x))
        if self.dwconv is not None:
            x = x + self.dwconv(x)
        return self.fc2(x)


class RetentionBlock(nn.Module):
    """RMT block: CPE, pre-norm MaSA and pre-norm FFN, each residual.

    ``x = x + DWConv3x3(x)`` (conditional position encoding), then
    ``x = x + DropPath(gamma1 * MaSA(LN(x)))`` and
    ``x = x + DropPath(gamma2 * FFN(LN(x)))``; ``gamma`` (layer scale) only
    when ``layer_scale_init`` is not None.

    Args:
        embed_dims (int): Channels C.
        num_heads (int): Heads of MaSA.
        ffn_dims (int): Hidden width of the FFN.
        decomposed (bool): Decomposed (True) or full (False) MaSA.
        drop_path (float): Stochastic depth rate of both branches.
        layer_scale_init (float | None): Initial layer-scale value.
        ffn_dwconv (bool): Depthwise conv inside the FFN.

    Shapes: x (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 ffn_dims: int,
                 decomposed: bool,
                 drop_path: float = 0.0,
                 layer_scale_init: Optional[float] = None,
                 ffn_dwconv: bool = True) -> None:
        super().__init__()
        self.cpe = DepthwiseConvNHWC(embed_dims, 3)
        self.norm1 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.attn = MaSA(embed_dims, num_heads, decomposed)
        self.norm2 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.ffn = RetentionFFN(embed_dims, ffn_dims, ffn_dwconv)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else (
            nn.Identity())
        if layer_scale_init is None:
            self.gamma1 = self.gamma2 = None
        else:
            self.gamma1 = nn.Parameter(
                torch.full((embed_dims, ), float(layer_scale_init)))
            self.gamma2 = nn.Parameter(
                torch.full((embed_dims, ), float(layer_scale_init)))

    def forward(self, x: Tensor, decay: DecayMasks) -> Tensor:
        """x (B, H, W, C) and the stage's decay masks -> (B, H, W, C)."""
        x = x + self.cpe(x)
        attn = self.attn(self.norm1(x), decay)
        if self.gamma1 is not None:
            attn = attn * self.gamma1
        x = x + self.drop_path(attn)
        ffn = self.ffn(self.norm2(x))
        if self.gamma2 is not None:
            ffn = ffn * self.gamma2
        return x + self.drop_path(ffn)


class RetentionStage(nn.Module):
    """One RMT stage: optional conv patch merging then retention blocks.

    Args:
        in_channels (int | None): Input channels; None for the first stage
            (no patch merging, input already at stride 4).
        embed_dims (int): Channels C of the stage.
        depth (int): Number of blocks.
        num_heads (int): Heads n.
        ffn_dims (int): FFN hidden width.
        decomposed (bool): Decomposed or full MaSA.
        init_value (float), heads_range (float): Decay settings.
        drop_paths (Sequence[float]): Stochastic depth rate per block.
        layer_scale_init (float | None): Layer-scale initial value.
        ffn_dwconv (bool), use_rope (bool): See :class:`RetentionBlock`,
            :class:`ManhattanDecay`.
        norm_cfg (dict): Norm of the patch merging conv (BN by default).
        with_cp (bool): Gradient checkpointing of each block.
        decay_cache_size (int): Feature sizes whose masks are cached.

    Shapes: (B, H, W, C_in) -> (B, ceil(H / 2), ceil(W / 2), C) with
    merging, (B, H, W, C) -> (B, H, W, C) without.
    """

    def __init__(self,
                 in_channels: Optional[int],
                 embed_dims: int,
                 depth: int,
                 num_heads: int,
                 ffn_dims: int,
                 decomposed: bool,
                 init_value: float,
                 heads_range: float,
                 drop_paths: Sequence[float],
                 layer_scale_init: Optional[float] = None,
                 ffn_dwconv: bool = True,
                 use_rope: bool = True,
                 norm_cfg: ConfigType = dict(type='BN'),
                 with_cp: bool = False,
                 decay_cache_size: int = 4) -> None:
        super().__init__()
        self.downsample = None if in_channels is None else conv_norm_act(
            in_channels, embed_dims, 2, norm_cfg)
        self.decay = ManhattanDecay(embed_dims, num_heads, init_value,
                                    heads_range, decomposed, use_rope,
                                    decay_cache_size)
        self.blocks = nn.ModuleList(
            RetentionBlock(embed_dims, num_heads, ffn_dims, decomposed,
                           drop_paths[i], layer_scale_init, ffn_dwconv)
            for i in range(depth))
        self.with_cp = with_cp

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C_in) -> (B, H', W', C), H' = ceil(H / 2) with patch
        merging, else H."""
        if self.downsample is not None:
            x = self.downsample(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        decay = self.decay(x.shape[1], x.shape[2])
        for block in self.blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(block, x, decay, use_reentrant=False)
            else:
                x = block(x, decay)
        return x


__all__ = [
    'conv_norm_act', 'DepthwiseConvNHWC', 'ManhattanDecay', 'MaSA',
    'RetentionFFN', 'RetentionBlock', 'RetentionStage', 'rotate_pairs'
]
