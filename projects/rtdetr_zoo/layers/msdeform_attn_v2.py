"""RT-DETRv2's multi-scale deformable cross-attention (Lv et al.,
"RT-DETRv2: Improved Baseline with Bag-of-Freebies for Real-Time Detection
Transformer", arXiv 2407.17140, Sec. 3)."""
import math
from typing import Optional, Sequence, Union

import torch
from mmengine.model import constant_init, xavier_init
from torch import Tensor

from mmdet.registry import MODELS

from .deformable_attention import CPUFastMultiScaleDeformableAttention

SAMPLING_METHODS = ('default', 'discrete')


@MODELS.register_module()
class MultiScaleDeformableAttentionV2(CPUFastMultiScaleDeformableAttention):
    """Deformable cross-attention of RT-DETRv2, in pure PyTorch (CPU and
    CUDA), same parameters as the official ``MSDeformableAttention`` of
    ``rtdetrv2_pytorch``.

    What v2 changes against :class:`CPUFastMultiScaleDeformableAttention`
    (RT-DETR / Deformable DETR):

    - **points per level** (paper Sec. 3, "distinct number of sampling
      points for features at different scales"): ``num_points`` is a list,
      one entry per level (an int means the same for every level). The
      P = sum(num_points) points of a head are laid out level by level, so
      with equal counts the parameters are those of the v1 module.
    - **offset scale**: a point's location is
      ``ref_xy + offset * (1 / n_l) * ref_wh * offset_scale``, with
      ``n_l`` the number of points of its level (the ``num_points_scale``
      buffer, (P,)) and ``offset_scale`` 0.5 by default (v1's fixed
      factor).
    - **discrete sampling** (``method='discrete'``, paper Sec. 3, "optional
      discrete sampling operator"): each point takes the value of the pixel
      at index ``floor(x * W + 0.5)``, ``floor(y * H + 0.5)`` clamped to the
      map, gathered by index instead of bilinear ``grid_sample``: an
      exported graph has no ``GridSample`` node. The rounding has no
      gradient, so the ``sampling_offsets`` are frozen (as in the official
      code, where a discrete model is fine-tuned from a ``default`` one).
      The official code clamps both indices to ``H - 1``, which reads the
      wrong pixel (or past the row) on non-square maps; here x is clamped
      to ``W - 1`` and y to ``H - 1`` (the same on square maps).

    The level loop, the location formula and bilinear sampling
    (``method='default'``: ``grid_sample``, ``align_corners=False``, zero
    padding) are the v1 module's (:meth:`forward_pytorch`,
    :meth:`sampling_locations`); this class adds the points per level, the
    discrete sampler (:meth:`sampling_grid`, :meth:`sample`) and runs that
    PyTorch path on every device (also with a key padding mask).

    Under autocast the sampling and the weighted sum run in the value
    dtype; the sampling locations (offsets included) are computed in
    float32, so that discrete sampling reads the pixels it reads in float32.

    Args:
        embed_dims (int): Model width C. Defaults to 256.
        num_heads (int): Attention heads. Defaults to 8.
        num_levels (int): Feature levels L. Defaults to 4.
        num_points (int | Sequence[int]): Sampling points per head, for each
            level (an int: the same for every level). Defaults to 4.
        offset_scale (float): Scale of the offsets relative to the
            reference box size. Defaults to 0.5.
        method (str): ``'default'`` (bilinear) or ``'discrete'`` (nearest
            pixel by index). Defaults to ``'default'``.
        dropout (float): Dropout on the output before the residual.
            Defaults to 0.1.
        batch_first (bool): Must be True: inputs are (B, n, C).
        init_cfg (dict, optional): mmengine initialisation config.

    Shapes: ``query`` (B, Q, C), ``value`` (B, N, C) with N the sum of the
    levels' H * W, ``reference_points`` (B, Q, L, 4) normalised
    (cx, cy, w, h) -> (B, Q, C).
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 num_levels: int = 4,
                 num_points: Union[int, Sequence[int]] = 4,
                 offset_scale: float = 0.5,
                 method: str = 'default',
                 dropout: float = 0.1,
                 batch_first: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        if isinstance(num_points, int):
            num_points = [num_points] * num_levels
        num_points = [int(n) for n in num_points]
        if len(num_points) != num_levels or min(num_points) < 1:
            raise ValueError(
                f'num_points must be a positive int or one positive count '
                f'per level (num_levels={num_levels}), got {num_points}')
        if method not in SAMPLING_METHODS:
            raise ValueError(f'method must be one of {SAMPLING_METHODS}, '
                             f'got {method!r}')
        if not batch_first:
            raise ValueError(
                'MultiScaleDeformableAttentionV2 supports batch_first=True '
                'only: query, value (B, n, C)')
        # mmcv sizes the projections num_heads * num_levels * num_points:
        # one "level" of all P points gives the (C, heads * P) layout.
        super().__init__(
            embed_dims=embed_dims, num_heads=num_heads, num_levels=1,
            num_points=sum(num_points), dropout=dropout, batch_first=True,
            init_cfg=init_cfg)
        self.num_levels = num_levels
        self.num_points = num_points
        self.offset_scale = offset_scale
        self.method = method
        self.register_buffer(
            'num_points_scale',
            torch.tensor([1 / n for n in num_points for _ in range(n)],
                         dtype=torch.float32))
        # (P,) level of each point.
        self.register_buffer(
            'point_level',
            torch.tensor([level for level, n in enumerate(num_points)
                          for _ in range(n)]), persistent=False)
        self.init_weights()
        if method == 'discrete':
            self.sampling_offsets.requires_grad_(False)

    def init_weights(self) -> None:
        """RT-DETRv2's initialisation: zero offset weights, the bias of the
        k-th point (1-based) of each level pointing along its head's
        direction (angle 2 pi h / heads, max-norm 1) times k; zero
        attention weights; Xavier-uniform projections (mmcv's
        initialisation when every level has the same points). mmcv's
        ``__init__`` calls it while ``num_points`` is still the one-level
        total."""
        points = self.points_per_level()
        device = self.sampling_offsets.weight.device
        thetas = torch.arange(self.num_heads, dtype=torch.float32,
                              device=device) * (2 * math.pi / self.num_heads)
        directions = torch.stack([thetas.cos(), thetas.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True)[0]
        steps = torch.cat([torch.arange(1, n + 1, dtype=torch.float32,
                                        device=device) for n in points])
        constant_init(self.sampling_offsets, 0.)
        with torch.no_grad():
            # (heads, P, 2)
            self.sampling_offsets.bias.copy_(
                (directions[:, None] * steps[None, :, None]).flatten())
        constant_init(self.attention_weights, val=0., bias=0.)
        xavier_init(self.value_proj, distribution='uniform', bias=0.)
        xavier_init(self.output_proj, distribution='uniform', bias=0.)
        self._is_init = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Refuse a checkpoint whose ``num_points_scale`` (saved by this
        module and by the official RT-DETRv2) says another number of points
        per level: its offsets would be read with the wrong levels."""
        scale = state_dict.get(prefix + 'num_points_scale')
        if scale is not None and (
                scale.shape != self.num_points_scale.shape
                or not torch.allclose(scale.float().cpu(),
                                      self.num_points_scale.cpu(),
                                      rtol=1e-3)):
            points = [round(1 / float(v)) for v in scale]
            per_level = [points[0]]
            while sum(per_level) < len(points):
                per_level.append(points[sum(per_level)])
            raise ValueError(
                f'{prefix}num_points_scale of the checkpoint means '
                f'num_points={per_level}, this model has num_points='
                f'{self.num_points}: set the config to the checkpoint\'s')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f'num_points={self.num_points}, '
                f'offset_scale={self.offset_scale}, method={self.method!r}')

    def sampling_grid(self, locations: Tensor, dtype: torch.dtype) -> Tensor:
        """Bilinear: ``grid_sample`` coordinates in the value dtype (v1's);
        discrete: the normalised locations themselves, in float32, from
        which :meth:`sample` computes the pixel index."""
        if self.method == 'discrete':
            return locations
        return super().sampling_grid(locations, dtype)

    def sample(self, level_value: Tensor, grid: Tensor) -> Tensor:
        """Values of one level at the sampling points.

        Args:
            level_value (Tensor): (B * heads, d, H, W).
            grid (Tensor): (B * heads, Q, n, 2) from :meth:`sampling_grid`.

        Returns:
            Tensor: (B * heads, d, Q, n) in the value dtype.
        """
        if self.method == 'default':
            return super().sample(level_value, grid)
        heads_batch, head_dims, height, width = level_value.shape
        num_query, num_points = grid.shape[1:3]
        # Nearest pixel as the official rounds: floor(x * W + 0.5), each
        # axis clamped to its own size.
        x = (grid[..., 0] * width + 0.5).floor().clamp(0, width - 1)
        y = (grid[..., 1] * height + 0.5).floor().clamp(0, height - 1)
        index = (y * width + x).long().reshape(heads_batch, 1, -1)
        sampled = level_value.flatten(2).gather(
            2, index.expand(-1, head_dims, -1))
        return sampled.view(heads_batch, head_dims, num_query, num_points)

    def runs_on_mmcv(self, value: Tensor, key_padding_mask: Optional[Tensor],
                     reference_points: Tensor) -> bool:
        """Never: mmcv's kernel has one number of points for every level and
        no discrete sampling, so this attention runs its PyTorch ops
        (:meth:`forward_pytorch`) on every device."""
        return False
