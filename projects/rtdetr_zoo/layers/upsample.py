"""Build the up-sampling operator of a feature pyramid from a config dict."""
import inspect

import torch.nn as nn

from mmdet.registry import MODELS

INTERPOLATION_MODES = ('nearest', 'bilinear', 'bicubic')


def build_upsample_layer(cfg, in_channels):
    """Build an up-sampler from ``cfg`` for a map with ``in_channels`` channels.

    ``dict(type='nearest' | 'bilinear' | 'bicubic', scale_factor=2, ...)``
    builds :class:`torch.nn.Upsample`; any other ``type`` is looked up in
    mmdet's ``MODELS`` registry (e.g. ``'DySample'``) and receives
    ``in_channels`` when its constructor accepts it and the config does not
    set it. This is what lets a neck swap its up-sampler by config only.
    """
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ValueError(
            f'upsample_cfg must be a dict with a "type" key, got {cfg!r}')
    cfg = dict(cfg)
    layer_type = cfg.pop('type')
    if layer_type in INTERPOLATION_MODES:
        cfg.setdefault('scale_factor', 2)
        return nn.Upsample(mode=layer_type, **cfg)
    layer_cls = MODELS.get(layer_type)
    if layer_cls is None:
        raise KeyError(
            f'upsample_cfg type {layer_type!r} is neither an interpolation '
            f'mode {INTERPOLATION_MODES} nor registered in mmdet MODELS '
            f'(is its module imported?)')
    if 'in_channels' in inspect.signature(layer_cls).parameters:
        cfg.setdefault('in_channels', in_channels)
    return layer_cls(**cfg)
