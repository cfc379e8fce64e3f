"""The contract every neck registered by rtdetr_zoo must keep.

The necks are discovered from mmdet's ``MODELS`` registry (every class
defined in ``rtdetr_zoo.necks``), so a new neck is tested as soon as it is
registered. Each is built small (``hidden_dim=32``, ``ffn_dim=64``) with one
input level per stride of its own ``feat_strides`` default, and crossed with
every up-sampler (nearest, DySample lp / pl) and CSP bottleneck (RepVGG,
MSGDC) variant. A neck must:

* take ``in_channels``, ``hidden_dim``, ``ffn_dim``, ``feat_strides``,
  ``eval_spatial_size``, ``upsample_cfg``, ``csp_block_cfg`` and
  ``norm_cfg``, and declare its ``out_strides``;
* map inputs of sizes ``ceil(H / s)`` at an odd image size to
  ``hidden_dim``-channel outputs of sizes ``ceil(H / s)``, ``s`` in
  ``out_strides``;
* give every trainable parameter a gradient;
* build with GroupNorm instead of BatchNorm (no BatchNorm left);
* keep its eval outputs through ``switch_to_deploy``;
* reject a resampled map smaller than the level it is fused with.
"""
import inspect

import pytest
import torch
from mmengine.registry import init_default_scope
from torch.nn.modules.batchnorm import _BatchNorm

import rtdetr_zoo.necks  # registers the modules
from mmdet.registry import MODELS
from rtdetr_zoo.layers import AIFI, RepVGGBlock, build_aifi, match_size

NECKS = sorted(
    (cls for cls in set(MODELS.module_dict.values())
     if cls.__module__.startswith('rtdetr_zoo.necks')),
    key=lambda cls: cls.__name__)
UPSAMPLE_CFGS = {
    'nearest': dict(type='nearest', scale_factor=2),
    'dysample_lp': dict(type='DySample', scale=2, style='lp', groups=4,
                        dyscope=False),
    'dysample_pl': dict(type='DySample', scale=2, style='pl', groups=4,
                        dyscope=False),
}
CSP_BLOCK_CFGS = {
    'repvgg': None,
    'msgdc': dict(type='MSGDCBottleneck', mixer='msgdc', shortcut=True,
                  mlp_ratio=2.0),
}
CONTRACT_ARGS = {'in_channels', 'hidden_dim', 'ffn_dim', 'feat_strides',
                 'eval_spatial_size', 'upsample_cfg', 'csp_block_cfg',
                 'norm_cfg'}
GN = dict(type='GN', num_groups=4)
IMAGE_SIZE = (97, 131)
HIDDEN_DIM = 32

neck_param = pytest.mark.parametrize('neck_cls', NECKS,
                                     ids=lambda cls: cls.__name__)
variant_params = [
    pytest.mark.parametrize('upsample', list(UPSAMPLE_CFGS)),
    pytest.mark.parametrize('csp_block', list(CSP_BLOCK_CFGS)),
]


def with_variants(test):
    for mark in variant_params:
        test = mark(test)
    return neck_param(test)


def default_strides(neck_cls):
    return tuple(
        inspect.signature(neck_cls).parameters['feat_strides'].default)


def small_neck(neck_cls, upsample='nearest', csp_block='repvgg', **kwargs):
    """``neck_cls`` at a small width, one input level per default stride."""
    num_levels = len(default_strides(neck_cls))
    cfg = dict(type=neck_cls.__name__,
               in_channels=[8 * (i + 1) for i in range(num_levels)],
               hidden_dim=HIDDEN_DIM, ffn_dim=64,
               upsample_cfg=UPSAMPLE_CFGS[upsample],
               csp_block_cfg=CSP_BLOCK_CFGS[csp_block])
    cfg.update(kwargs)
    init_default_scope('mmdet')
    neck = MODELS.build(cfg)
    return neck


def ceil_size(stride, size=IMAGE_SIZE):
    return tuple(-(-s // stride) for s in size)


def inputs_for(neck, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    strides = default_strides(type(neck))
    return [torch.randn(batch, c, *ceil_size(s), generator=gen)
            for c, s in zip(neck.in_channels, strides)]


def randomise_norm_statistics(neck, seed=0):
    """Non-trivial eval-mode BN statistics and affine parameters.

    Every BN scales by weight / sqrt(var) <= 1, so activations stay O(1)
    through the stacked blocks and float32 round-off stays far below 1e-4.
    """
    gen = torch.Generator().manual_seed(seed)

    def uniform(shape, low, high):
        return torch.rand(shape, generator=gen) * (high - low) + low

    with torch.no_grad():
        for module in neck.modules():
            if isinstance(module, _BatchNorm):
                shape = module.running_mean.shape
                module.running_mean.copy_(uniform(shape, -0.5, 0.5))
                module.running_var.copy_(uniform(shape, 1.0, 2.0))
                module.weight.copy_(uniform(shape, 0.5, 1.0))
                module.bias.copy_(uniform(shape, -0.2, 0.2))


def switch_to_deploy(neck):
    """``switch_to_deploy()`` on every sub-module that has it."""
    targets = [m for m in neck.modules()
               if callable(getattr(m, 'switch_to_deploy', None))]
    for module in targets:
        module.switch_to_deploy()
    return targets


def check_outputs(neck, outs, batch=2):
    assert len(outs) == len(neck.out_strides) >= 1
    assert [tuple(o.shape) for o in outs] == [
        (batch, HIDDEN_DIM, *ceil_size(s)) for s in neck.out_strides]
    assert all(torch.isfinite(o).all() for o in outs)


def test_necks_are_discovered():
    """Every neck ``rtdetr_zoo.necks`` exports is registered (so tested
    here) and takes the contract's arguments."""
    names = [cls.__name__ for cls in NECKS]
    assert 'HybridEncoder' in names and 'BiFPNHybridEncoder' in names
    exported = {obj for obj in vars(rtdetr_zoo.necks).values()
                if inspect.isclass(obj) and issubclass(obj, torch.nn.Module)}
    assert exported == set(NECKS)
    for cls in NECKS:
        missing = CONTRACT_ARGS - set(inspect.signature(cls).parameters)
        assert not missing, (cls.__name__, missing)


@with_variants
def test_odd_size_shapes_and_every_parameter_gets_a_gradient(
        neck_cls, upsample, csp_block):
    torch.manual_seed(0)
    neck = small_neck(neck_cls, upsample, csp_block).train()
    outs = neck(inputs_for(neck))
    check_outputs(neck, outs)
    # Random weights: a plain sum of BN outputs has a zero gradient.
    gen = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=gen)).sum() for o in outs)
    loss.backward()
    no_grad = [name for name, p in neck.named_parameters()
               if p.requires_grad and (p.grad is None
                                       or not p.grad.abs().sum() > 0)]
    assert not no_grad


@with_variants
def test_group_norm_everywhere(neck_cls, upsample, csp_block):
    torch.manual_seed(0)
    neck = small_neck(neck_cls, upsample, csp_block, norm_cfg=GN).train()
    assert not [m for m in neck.modules() if isinstance(m, _BatchNorm)]
    assert any(isinstance(m, torch.nn.GroupNorm) for m in neck.modules())
    check_outputs(neck, neck(inputs_for(neck, batch=1)), batch=1)
    # RepVGG blocks with GroupNorm cannot be fused: switch_to_deploy leaves
    # them (and the outputs) as they are.
    neck.eval()
    feats = inputs_for(neck)
    with torch.no_grad():
        before = neck(feats)
        switch_to_deploy(neck)
        after = neck(feats)
    assert not any(m.deploy for m in neck.modules()
                   if isinstance(m, RepVGGBlock))
    for a, b in zip(after, before):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@with_variants
def test_switch_to_deploy_keeps_eval_outputs(neck_cls, upsample, csp_block):
    torch.manual_seed(0)
    neck = small_neck(neck_cls, upsample, csp_block)
    randomise_norm_statistics(neck)
    neck.eval()
    feats = inputs_for(neck)
    with torch.no_grad():
        before = neck(feats)
        switched = switch_to_deploy(neck)
        after = neck(feats)
    blocks = [m for m in neck.modules() if isinstance(m, RepVGGBlock)]
    assert all(block.deploy for block in blocks)
    if csp_block == 'repvgg':
        assert blocks and switched
    check_outputs(neck, after)
    for a, b in zip(after, before):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@neck_param
def test_eval_spatial_size_caches_the_ceil_level_size(neck_cls):
    """AIFI caches its embedding for a ceil(H / s) level; outputs unchanged."""
    torch.manual_seed(0)
    cached = small_neck(neck_cls, eval_spatial_size=IMAGE_SIZE).eval()
    plain = small_neck(neck_cls).eval()
    plain.load_state_dict(cached.state_dict())
    aifis = [m for m in cached.modules() if isinstance(m, AIFI)]
    level_sizes = {ceil_size(s) for s in default_strides(neck_cls)}
    assert aifis and all(a.eval_spatial_size in level_sizes for a in aifis)
    feats = inputs_for(cached)
    with torch.no_grad():
        for a, b in zip(cached(feats), plain(feats)):
            torch.testing.assert_close(a, b)


@neck_param
def test_feat_strides_need_one_stride_per_level(neck_cls):
    strides = default_strides(neck_cls)
    with pytest.raises(ValueError, match=r'feat_strides .* one stride per'):
        small_neck(neck_cls, feat_strides=strides[:-1])


@neck_param
def test_a_map_smaller_than_its_level_is_an_error(neck_cls):
    neck = small_neck(neck_cls).eval()
    feats = inputs_for(neck, batch=1)
    # A coarsest level of 1x1 up-samples to 2x2, smaller than its
    # ceil(97 / s) x ceil(131 / s) neighbour.
    feats[-1] = feats[-1][..., :1, :1]
    with torch.no_grad(), pytest.raises(ValueError, match='smaller than'):
        neck(feats)


def test_match_size_crops_and_rejects_smaller_maps():
    ref = torch.zeros(1, 3, 7, 9)
    x = torch.arange(8 * 10, dtype=torch.float32).view(1, 1, 8, 10)
    torch.testing.assert_close(match_size(x, ref), x[..., :7, :9])
    same = torch.randn(2, 4, 7, 9)
    torch.testing.assert_close(match_size(same, ref), same)
    with pytest.raises(ValueError, match=r'\(1, 1, 6, 10\) is smaller than'):
        match_size(x[..., :6, :], ref)


def test_build_aifi_level_size_is_ceil():
    aifi = build_aifi(16, 2, 32, 0.0, dict(type='GELU'), 1, 10000.,
                      IMAGE_SIZE, 32)
    assert aifi.eval_spatial_size == (4, 5)  # ceil(97 / 32), ceil(131 / 32)
    assert build_aifi(16, 2, 32, 0.0, dict(type='GELU'), 1, 10000., None,
                      32).eval_spatial_size is None
    with pytest.raises(ValueError, match='stride must be a positive int'):
        build_aifi(16, 2, 32, 0.0, dict(type='GELU'), 1, 10000., IMAGE_SIZE,
                   0)
