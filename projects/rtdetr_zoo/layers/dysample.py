"""DySample: a dynamic up-sampler that learns where to sample.

Liu et al., "Learning to Upsample by Learning to Sample", ICCV 2023
(https://arxiv.org/abs/2308.15085). Instead of a fixed interpolation kernel,
DySample predicts, for every output pixel, a small 2-D offset added to its
bilinear sampling position, then resamples the input with ``grid_sample``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule, constant_init, normal_init
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.utils import OptMultiConfig

STYLES = ('lp', 'pl')


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'DySample: {name} must be a positive int, '
                         f'got {value!r}')


@MODELS.register_module()
class DySample(BaseModule):
    """Dynamic point-sampling up-sampler (Liu et al., ICCV 2023).

    Every output pixel ``(i, j)`` of the ``scale``-times larger map starts at
    its bilinear position ``((j + 0.5) / s, (i + 0.5) / s)`` in input pixel
    units (the ``align_corners=False`` convention), so zero offsets give
    exactly bilinear up-sampling. A 1x1 conv predicts an offset per output
    pixel and per channel group, which moves that position:

    * static range factor: ``offset = 0.25 * conv(x)``, which keeps each
      point inside its own neighbourhood (paper Sec. 3.3);
    * dynamic scope (``dyscope=True``):
      ``offset = 0.5 * sigmoid(scope(x)) * conv(x)``, a point-wise factor in
      [0, 0.5] centred on 0.25.

    The ``groups`` channel groups get their own offsets. The input is read
    with ``grid_sample(mode='bilinear', align_corners=False,
    padding_mode='border')``.

    Offset generation styles:

    * ``'lp'`` (linear + pixel shuffle): the conv maps ``C`` to
      ``2 * groups * scale**2`` channels at input resolution, pixel-shuffled
      to one offset per output pixel.
    * ``'pl'`` (pixel shuffle + linear): the input is first pixel-shuffled to
      ``C / scale**2`` channels at output resolution, and the conv maps it to
      ``2 * groups`` channels; cheaper.

    The paper's four variants:

    ============  =========  ===========  ==========================
    name          style      dyscope      params (C=256, s=2, g=4)
    ============  =========  ===========  ==========================
    DySample      ``'lp'``   False        8,224
    DySample+     ``'lp'``   True         16,416
    DySample-S    ``'pl'``   False        520
    DySample-S+   ``'pl'``   True         1,032
    ============  =========  ===========  ==========================

    The offset conv is initialised with N(0, 0.001) weights and zero bias and
    the scope conv (no bias) with zeros, as in the authors' code, so the
    module starts as (almost) bilinear up-sampling.

    Args:
        in_channels (int): Channels ``C`` of the input (and the output).
        scale (int): Up-sampling factor ``s`` (>= 2). Defaults to 2.
        style (str): ``'lp'`` or ``'pl'``. Defaults to ``'lp'``.
        groups (int): Channel groups with their own offsets; must divide
            ``in_channels``. Defaults to 4.
        dyscope (bool): Use the dynamic scope factor. Defaults to False.
        init_cfg (dict | list[dict], optional): Overrides the default
            initialisation above.

    Shapes: (B, C, H, W) -> (B, C, s * H, s * W) for any H, W.
    """

    def __init__(self,
                 in_channels: int,
                 scale: int = 2,
                 style: str = 'lp',
                 groups: int = 4,
                 dyscope: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        _check_positive_int('in_channels', in_channels)
        _check_positive_int('groups', groups)
        _check_positive_int('scale', scale)
        if scale < 2:
            raise ValueError(f'DySample: scale must be >= 2, got {scale}')
        if style not in STYLES:
            raise ValueError(
                f'DySample: style must be one of {STYLES}, got {style!r}')
        if in_channels % groups:
            raise ValueError(
                f'DySample: in_channels ({in_channels}) must be divisible by '
                f'groups ({groups})')
        if style == 'pl' and in_channels % scale**2:
            raise ValueError(
                f"DySample(style='pl'): in_channels ({in_channels}) must be "
                f'divisible by scale**2 ({scale**2}), the pixel-shuffle '
                f'factor')
        self.in_channels = in_channels
        self.scale = scale
        self.style = style
        self.groups = groups
        self.dyscope = dyscope
        if style == 'pl':
            conv_in, conv_out = in_channels // scale**2, 2 * groups
        else:
            conv_in, conv_out = in_channels, 2 * groups * scale**2
        self.offset = nn.Conv2d(conv_in, conv_out, 1)
        self.scope = (nn.Conv2d(conv_in, conv_out, 1, bias=False)
                      if dyscope else None)
        self._reset_parameters()

    def _reset_parameters(self):
        normal_init(self.offset, mean=0, std=0.001, bias=0)
        if self.scope is not None:
            constant_init(self.scope, 0)

    def init_weights(self) -> None:
        """Apply ``init_cfg`` when given, else the authors' initialisation."""
        if self.init_cfg:
            super().init_weights()
        else:
            self._reset_parameters()
            self._is_init = True

    def _scaled_offset(self, x: Tensor) -> Tensor:
        """Offsets (B, 2 * groups, s * H, s * W) in input pixel units.

        Channel ``k * groups + g`` holds the x (k=0) or y (k=1) offset of
        group ``g``.
        """
        s = self.scale
        if self.style == 'pl':
            x = F.pixel_shuffle(x, s)
        offset = self.offset(x)
        if self.scope is None:
            offset = offset * 0.25
        else:
            offset = offset * self.scope(x).sigmoid() * 0.5
        if self.style == 'lp':
            offset = F.pixel_shuffle(offset, s)
        return offset

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'DySample expects a (B, {self.in_channels}, H, W) tensor, '
                f'got shape {tuple(x.shape)}')
        b, c, h, w = x.shape
        s, g = self.scale, self.groups
        offset = self._scaled_offset(x).reshape(b, 2, g, s * h, s * w)
        # Bilinear initial positions (align_corners=False), input pixel units.
        pos_x = (torch.arange(s * w, device=x.device, dtype=x.dtype) + 0.5) / s
        pos_y = (torch.arange(s * h, device=x.device, dtype=x.dtype) + 0.5) / s
        grid_x = (pos_x + offset[:, 0]) * (2.0 / w) - 1
        grid_y = (pos_y[:, None] + offset[:, 1]) * (2.0 / h) - 1
        grid = torch.stack((grid_x, grid_y), dim=-1).flatten(0, 1)
        out = F.grid_sample(
            x.reshape(b * g, c // g, h, w), grid, mode='bilinear',
            padding_mode='border', align_corners=False)
        return out.reshape(b, c, s * h, s * w)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, scale={self.scale}, '
                f'style={self.style!r}, groups={self.groups}, '
                f'dyscope={self.dyscope}')
