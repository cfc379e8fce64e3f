"""DySample (Liu et al., ICCV 2023) and its use as RT-DETR's up-sampler."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import RUNNERS, init_default_scope

from mmdet.registry import MODELS
from rtdetr_zoo.layers import DySample, build_upsampler
from rtdetr_zoo.necks import HybridEncoder

from .utils import (REPO_ROOT, build_detector_from_config, load_config,
                    run_loss_and_predict)

# (style, dyscope) of the paper's four variants.
VARIANTS = {
    'DySample': ('lp', False),
    'DySample+': ('lp', True),
    'DySample-S': ('pl', False),
    'DySample-S+': ('pl', True),
}
# Parameters at C=256, s=2, g=4: the 1x1 offset conv, C x 2gs^2 plus bias
# (lp) or C/s^2 x 2g plus bias (pl); dyscope adds a bias-free twin.
PARAMS_256 = {
    'DySample': 8224,
    'DySample+': 16416,
    'DySample-S': 520,
    'DySample-S+': 1032,
}


def num_params(module):
    return sum(p.numel() for p in module.parameters())


def zero_offsets(module):
    torch.nn.init.zeros_(module.offset.weight)
    torch.nn.init.zeros_(module.offset.bias)


@pytest.mark.parametrize('name', list(VARIANTS))
@pytest.mark.parametrize('scale,size', [(2, (7, 9)), (3, (5, 4))])
def test_forward_backward_odd_sizes(name, scale, size):
    style, dyscope = VARIANTS[name]
    channels = 36 if scale == 3 else 16
    groups = 2 if scale == 3 else 4
    torch.manual_seed(0)
    module = DySample(channels, scale=scale, style=style, groups=groups,
                      dyscope=dyscope)
    x = torch.randn(2, channels, *size, requires_grad=True)
    out = module(x)
    assert out.shape == (2, channels, scale * size[0], scale * size[1])
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert module.offset.weight.grad.abs().sum() > 0
    if dyscope:
        assert module.scope.weight.grad is not None
        assert torch.isfinite(module.scope.weight.grad).all()
    else:
        assert module.scope is None


@pytest.mark.parametrize('name', list(VARIANTS))
def test_param_counts(name):
    style, dyscope = VARIANTS[name]
    module = DySample(256, style=style, dyscope=dyscope)
    assert num_params(module) == PARAMS_256[name]


@pytest.mark.parametrize('name', list(VARIANTS))
def test_initialisation(name):
    style, dyscope = VARIANTS[name]
    torch.manual_seed(0)
    module = DySample(256, style=style, dyscope=dyscope)
    module.offset.weight.data.fill_(1.0)
    module.init_weights()
    std = module.offset.weight.std().item()
    assert 0.0008 < std < 0.0012
    assert module.offset.bias.abs().max() == 0
    if dyscope:
        assert module.scope.bias is None
        assert module.scope.weight.abs().max() == 0


@pytest.mark.parametrize('name', list(VARIANTS))
@pytest.mark.parametrize('scale,size', [(2, (7, 9)), (2, (1, 6)), (3, (4, 5))])
def test_zero_offsets_equal_bilinear(name, scale, size):
    """Pins the sampling grid: bilinear initial positions, border padding."""
    style, dyscope = VARIANTS[name]
    channels = 36 if scale == 3 else 16
    module = DySample(channels, scale=scale, style=style, groups=2,
                      dyscope=dyscope)
    zero_offsets(module)
    x = torch.randn(2, channels, *size)
    expected = F.interpolate(x, scale_factor=scale, mode='bilinear',
                             align_corners=False)
    torch.testing.assert_close(module(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('name', list(VARIANTS))
def test_offset_channel_layout(name):
    """A constant 1-pixel offset moves group 0 along x and group 1 along y.

    The offset conv's channels are ``(x|y, group, sub-pixel)`` (after the
    pixel shuffle for ``'lp'``), as in the authors' code; a bias of 4 is one
    input pixel after the 0.25 range factor (or sigmoid(0) * 0.5).
    """
    style, dyscope = VARIANTS[name]
    s, groups, channels = 2, 4, 16
    module = DySample(channels, scale=s, style=style, groups=groups,
                      dyscope=dyscope)
    zero_offsets(module)
    per = s * s if style == 'lp' else 1  # channels per (component, group)
    with torch.no_grad():
        bias = module.offset.bias.view(2, groups, per)
        bias[0, 0] = 4.0  # group 0: x += 1 input pixel
        bias[1, 1] = 4.0  # group 1: y += 1 input pixel
    x = torch.randn(1, channels, 6, 7)
    out = module(x)
    up = F.interpolate(x, scale_factor=s, mode='bilinear',
                       align_corners=False)
    c = channels // groups
    torch.testing.assert_close(out[:, :c, :, :-s], up[:, :c, :, s:])
    torch.testing.assert_close(out[:, c:2 * c, :-s], up[:, c:2 * c, s:])
    torch.testing.assert_close(out[:, 2 * c:], up[:, 2 * c:])
    assert not torch.allclose(out[:, :c], up[:, :c])


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=30, groups=4), r'in_channels \(30\).*groups \(4\)'),
    (dict(in_channels=18, groups=2, style='pl'), r'scale\*\*2 \(4\)'),
    (dict(in_channels=32, style='lpp'), r"style.*'lpp'"),
    (dict(in_channels=32, scale=1), r'scale must be >= 2'),
    (dict(in_channels=32, scale=2.0), r'scale must be a positive int'),
    (dict(in_channels=32, groups=0), r'groups must be a positive int'),
    (dict(in_channels=0), r'in_channels must be a positive int'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DySample(**kwargs)


def test_wrong_input_channels():
    with pytest.raises(ValueError, match=r'\(B, 16, H, W\).*\(1, 8, 5, 5\)'):
        DySample(16)(torch.randn(1, 8, 5, 5))


def test_build_upsampler_injects_in_channels():
    init_default_scope('mmdet')
    layer = build_upsampler(dict(type='DySample', style='pl'), 64)
    assert isinstance(layer, DySample)
    assert layer.in_channels == 64 and layer.style == 'pl'
    assert MODELS.get('DySample') is DySample


def test_hybrid_encoder_with_dysample_adds_two_upsamplers():
    """Both top-down up-samplers are DySample; nothing else changes.

    Shapes and gradients at odd sizes: tests/test_neck_contract.py.
    """
    common = dict(in_channels=[16, 32, 64], hidden_dim=32, num_heads=4,
                  ffn_dim=64, expansion=0.5)
    neck = HybridEncoder(upsample_cfg=dict(type='DySample'), **common)
    nearest = HybridEncoder(**common)
    assert all(isinstance(u, DySample) for u in neck.upsamples)
    assert num_params(neck) - num_params(nearest) == 2 * num_params(
        DySample(32))


@pytest.mark.parametrize('config,baseline', [
    ('rtdetr_dysample', 'rtdetr_hgnetv2_l_coco'),
    ('rtdetr_r18vd_dysample', 'rtdetr_r18vd_coco'),
    ('rtdetr_r18vd_dysample_raccoon', 'rtdetr_r18vd_raccoon'),
])
def test_config_adds_two_dysamples(config, baseline):
    init_default_scope('mmdet')
    model = MODELS.build(load_config(config).model)
    base = MODELS.build(load_config(baseline).model)
    assert [type(u) for u in model.neck.upsamples] == [DySample, DySample]
    assert num_params(model) - num_params(base) == 2 * 8224


def test_rtdetr_l_dysample_matches_ultralytics_total():
    """The blog post's Ultralytics `rtdetr-l-DySample` (nc=1): 32,824,579
    parameters, as Ultralytics prints them."""
    init_default_scope('mmdet')
    cfg = load_config('rtdetr_dysample', **{'model.bbox_head.num_classes': 1})
    assert num_params(MODELS.build(cfg.model)) == 32_824_579


def test_detector_loss_and_predict_odd_sizes():
    torch.manual_seed(0)
    model = build_detector_from_config('rtdetr_r18vd_dysample_raccoon')
    losses, results = run_loss_and_predict(model, sizes=((97, 131),
                                                         (112, 80)))
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert len(results) == 2
    for upsample in model.neck.upsamples:
        assert upsample.offset.weight.grad.abs().sum() > 0


def test_raccoon_config_trains_a_few_iterations(tmp_path):
    """Three optimiser steps of the raccoon config with the real runner."""
    cfg = load_config(
        'rtdetr_r18vd_dysample_raccoon', **{
            'model.num_queries': 30,
            'model.dn_cfg.group_cfg.num_dn_queries': 10,
            'model.test_cfg.max_per_img': 30,
            'model.data_preprocessor.batch_augments': None,
            'train_dataloader.batch_size': 2,
            'train_dataloader.num_workers': 0,
            'train_dataloader.persistent_workers': False,
            'train_dataloader.dataset.data_root':
            osp.join(REPO_ROOT, 'data', 'raccoon') + osp.sep,
            'default_hooks.checkpoint.save_best': None,
            'default_hooks.logger.interval': 1,
        })
    cfg.train_dataloader.dataset.pipeline[-2].scale = (160, 160)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=3)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.log_processor = dict(type='LogProcessor', by_epoch=False)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100,
                                        by_epoch=False)
    cfg.work_dir = str(tmp_path)
    cfg.launcher = 'none'
    runner = RUNNERS.build(cfg)
    upsample = runner.model.neck.upsamples[0]
    before = upsample.offset.weight.detach().clone()
    runner.train()
    assert runner.iter == 3
    assert not torch.equal(before, upsample.offset.weight.detach())
    losses = runner.message_hub.get_scalar('train/loss').current()
    assert torch.isfinite(torch.tensor(losses))
