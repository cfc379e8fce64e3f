"""AIFI: attention-based intra-scale feature interaction (RT-DETR, CVPR 2024).

One (or more) post-norm transformer encoder layers applied to the flattened
stride-32 feature map, with a fixed 2D sin-cos position embedding. The
encoder layer is mmdet's :class:`DetrTransformerEncoder`.
"""
from typing import Optional, Tuple, Union

import torch
from mmengine.model import BaseModule
from torch import Tensor

from mmdet.models.layers import DetrTransformerEncoder
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig


def sincos_position_embedding_2d(
        height: int,
        width: int,
        embed_dims: int,
        temperature: float = 10000.,
        device: Optional[Union[torch.device, str]] = None) -> Tensor:
    """2D sin-cos position embedding, shape (1, H * W, embed_dims).

    Token ``(y, x)`` (row-major, as ``feat.flatten(2)`` orders them) gets
    ``[sin(y w), cos(y w), sin(x w), cos(x w)]`` with
    ``w_k = temperature ** (-k / (embed_dims / 4))``. On square maps this is
    exactly the official RT-DETR embedding (its ``build_2d_sincos_position_
    embedding``); on non-square maps the official one scrambles coordinates
    (it flattens a (W, H) grid), whereas this one stays a proper 2D embedding.
    """
    if embed_dims % 4 != 0:
        raise ValueError(
            f'embed_dims must be divisible by 4 for a 2D sin-cos position '
            f'embedding, got {embed_dims}')
    grid_y, grid_x = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=device),
        torch.arange(width, dtype=torch.float32, device=device), indexing='ij')
    pos_dim = embed_dims // 4
    omega = torch.arange(pos_dim, dtype=torch.float32, device=device) / pos_dim
    omega = 1. / temperature**omega
    out_y = grid_y.flatten()[:, None] * omega[None]
    out_x = grid_x.flatten()[:, None] * omega[None]
    return torch.cat(
        [out_y.sin(), out_y.cos(), out_x.sin(), out_x.cos()], dim=1)[None]


@MODELS.register_module()
class AIFI(BaseModule):
    """Transformer encoder over one feature map with 2D sin-cos positions.

    Args:
        embed_dims (int): Channels C. Defaults to 256.
        num_heads (int): Attention heads. Defaults to 8.
        ffn_dim (int): FFN hidden width. Defaults to 1024.
        dropout (float): Dropout in attention and FFN. Defaults to 0.
        act_cfg (dict): FFN activation. Defaults to GELU.
        num_layers (int): Encoder layers. Defaults to 1.
        pe_temperature (float): Position-embedding temperature.
        eval_spatial_size (tuple[int, int], optional): (H, W) of the feature
            map at a fixed evaluation size; its position embedding is
            pre-computed once and reused in eval mode.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 ffn_dim: int = 1024,
                 dropout: float = 0.0,
                 act_cfg: ConfigType = dict(type='GELU'),
                 num_layers: int = 1,
                 pe_temperature: float = 10000.,
                 eval_spatial_size: Optional[Tuple[int, int]] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        self.embed_dims = embed_dims
        self.pe_temperature = pe_temperature
        self.encoder = DetrTransformerEncoder(
            num_layers=num_layers,
            layer_cfg=dict(
                self_attn_cfg=dict(
                    embed_dims=embed_dims, num_heads=num_heads,
                    dropout=dropout, batch_first=True),
                ffn_cfg=dict(
                    embed_dims=embed_dims, feedforward_channels=ffn_dim,
                    num_fcs=2, ffn_drop=dropout, act_cfg=act_cfg)))
        self.eval_spatial_size = (
            tuple(eval_spatial_size) if eval_spatial_size else None)
        if self.eval_spatial_size:
            self.register_buffer(
                'eval_pos_embed',
                sincos_position_embedding_2d(
                    *self.eval_spatial_size, embed_dims, pe_temperature),
                persistent=False)

    def position_embedding(self, height: int, width: int,
                           device: torch.device) -> Tensor:
        """(1, H * W, C) embedding; cached for ``eval_spatial_size``."""
        if not self.training and self.eval_spatial_size == (height, width):
            return self.eval_pos_embed
        return sincos_position_embedding_2d(
            height, width, self.embed_dims, self.pe_temperature, device=device)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        pos = self.position_embedding(height, width, x.device).to(x.dtype)
        tokens = self.encoder(
            query=tokens, query_pos=pos, key_padding_mask=None)
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)


def build_aifi(hidden_dim: int, num_heads: int, ffn_dim: int, dropout: float,
               act_cfg: ConfigType, num_layers: int, pe_temperature: float,
               eval_spatial_size: Optional[Tuple[int, int]],
               stride: int) -> AIFI:
    """The :class:`AIFI` encoder of one neck level (RT-DETR, Sec. 4.2).

    The level's feature map is ``ceil(H / stride) x ceil(W / stride)`` for an
    ``H x W`` image, so its eval-size position embedding is cached for that
    size.

    Args:
        hidden_dim (int): Channels C of the level.
        num_heads (int), ffn_dim (int), dropout (float), act_cfg (dict),
            num_layers (int), pe_temperature (float): see :class:`AIFI`.
        eval_spatial_size (tuple[int, int] | None): (H, W) of the input
            image at a fixed evaluation size, or None (no cache).
        stride (int): Stride of the level w.r.t. the image.

    Returns:
        AIFI: the encoder, (B, C, H_l, W_l) -> (B, C, H_l, W_l).
    """
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(
            f'build_aifi: stride must be a positive int, got {stride!r}')
    level_size = None
    if eval_spatial_size is not None:
        level_size = tuple(-(-size // stride) for size in eval_spatial_size)
    return AIFI(hidden_dim, num_heads, ffn_dim, dropout, act_cfg, num_layers,
                pe_temperature, level_size)
