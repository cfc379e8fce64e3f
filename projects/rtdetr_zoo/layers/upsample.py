"""Build the up-sampling operator of a feature pyramid from a config dict,
and crop a resampled map to the size of the level it is fused with."""
import torch
import torch.nn as nn
from torch import Tensor

from .csp_layers import build_registered

INTERPOLATION_MODES = ('nearest', 'bilinear', 'bicubic')


def build_upsampler(cfg: dict, in_channels: int) -> nn.Module:
    """Build an up-sampler from ``cfg`` for maps of ``in_channels`` channels.

    ``dict(type='nearest' | 'bilinear' | 'bicubic', scale_factor=2, ...)``
    builds :class:`torch.nn.Upsample`; any other ``type`` is looked up in
    mmdet's ``MODELS`` registry (e.g. ``'DySample'``) and receives
    ``in_channels`` when its constructor accepts it and the config does not
    set it. This is what lets a neck swap its up-sampler by config only,
    which mmcv's ``build_upsample_layer`` (the same arguments for every
    type) does not.

    Raises:
        ValueError: ``cfg`` is not a dict with a ``type``.
        KeyError: the ``type`` is neither an interpolation mode nor
            registered.
    """
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ValueError(
            f'upsample_cfg must be a dict with a "type" key, got {cfg!r}')
    if cfg['type'] in INTERPOLATION_MODES:
        cfg = dict(cfg)
        cfg.setdefault('scale_factor', 2)
        return nn.Upsample(mode=cfg.pop('type'), **cfg)
    return build_registered(
        cfg, 'upsample_cfg',
        hint=f' nor an interpolation mode {INTERPOLATION_MODES}',
        in_channels=in_channels)


def match_size(x: Tensor, ref: Tensor) -> Tensor:
    """Crop a resampled map ``x`` to the spatial size of ``ref``.

    With inputs of sizes ``ceil(H / s)`` and strides doubling per level, an
    x2 up-sampled (or stride-2 down-sampled) map is the size of the level it
    is fused with, or one pixel larger where that level's size is odd; the
    extra row/column is cropped. A map smaller than ``ref`` means the inputs
    do not follow that rule, which is an error.

    Shapes: x (B, C, H_x, W_x), ref (B', C', H, W) with H_x >= H, W_x >= W
    -> (B, C, H, W).

    Raises:
        ValueError: if ``x`` is smaller than ``ref`` in height or width.
    """
    height, width = ref.shape[-2:]
    if not torch.jit.is_tracing() and (x.shape[-2] < height
                                       or x.shape[-1] < width):
        raise ValueError(
            f'match_size: a resampled map of shape {tuple(x.shape)} is '
            f'smaller than the level it is fused with {tuple(ref.shape)}; '
            f'neck inputs must have sizes ceil(H / stride) for the image '
            f'size (H, W), with strides doubling per level')
    return x[..., :height, :width]
