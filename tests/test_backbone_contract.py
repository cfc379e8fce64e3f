"""The backbone contract, checked for every backbone that rtdetr_zoo registers.

The backbones are found in mmdet's MODELS registry (every class defined in
``rtdetr_zoo.backbones``), so a backbone is tested the day it is registered.
Each is built at its ``smallest_cfg`` (its smallest published setting) and
must:

* output, at an odd input size, the declared ``out_channels`` at
  ``ceil(size / stride)`` for every selected stage, with 0-based and
  negative ``out_indices`` meaning the same stages everywhere;
* give every trainable parameter a gradient;
* freeze exactly the stem and the first ``k`` stages for ``frozen_stages=k``
  (named by ``stage_module_names``, which must cover every parameter);
* keep every BatchNorm in eval mode after ``train()`` with ``norm_eval``;
* build without any BatchNorm when given a GroupNorm ``norm_cfg``.
"""
import math

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

import rtdetr_zoo  # noqa: F401  (registers the modules)
from mmdet.registry import MODELS
from rtdetr_zoo.backbones import BackboneContract

SIZE = (97, 131)


def registered_backbones():
    names = sorted(
        name for name, cls in MODELS.module_dict.items()
        if cls.__module__.startswith('rtdetr_zoo.backbones'))
    assert names, 'no backbone registered by rtdetr_zoo'
    return names


def build(name, **kwargs):
    cls = MODELS.get(name)
    cfg = dict(type=name, **cls.smallest_cfg)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def all_stages(name):
    return tuple(range(build(name).num_stages))


def run(model, size=SIZE, grad=False):
    x = torch.rand(1, 3, *size)
    if grad:
        return model(x)
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize('name', registered_backbones())
def test_declares_the_contract(name):
    cls = MODELS.get(name)
    assert issubclass(cls, BackboneContract), (
        f'{name} does not derive from BackboneContract')
    assert isinstance(cls.smallest_cfg, dict), (
        f'{name} must name its smallest published setting in smallest_cfg')


@pytest.mark.parametrize('name', registered_backbones())
def test_outputs_have_declared_channels_and_ceil_shapes(name):
    model = build(name, out_indices=all_stages(name)).eval()
    outs = run(model)
    assert len(outs) == len(model.feature_info) == model.num_stages
    # A selection that skips stages declares, and outputs, the channels of
    # the stages it selects.
    ends = build(name, out_indices=(0, model.num_stages - 1)).eval()
    end_outs = run(ends)
    assert [o.shape for o in end_outs] == [outs[0].shape, outs[-1].shape]
    assert ends.out_channels == [o.shape[1] for o in end_outs]
    assert ends.out_strides == [model.out_strides[0], model.out_strides[-1]]
    strides = model.out_strides
    assert all(b == 2 * a for a, b in zip(strides, strides[1:])), strides
    for out, channels, stride in zip(outs, model.out_channels, strides):
        assert out.shape == (1, channels, math.ceil(SIZE[0] / stride),
                             math.ceil(SIZE[1] / stride)), (name, stride)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize('name', registered_backbones())
def test_negative_out_indices_select_the_same_stages(name):
    positive = build(name, out_indices=(1, 2, 3))
    negative = build(name, out_indices=(-3, -2, -1))
    last = build(name, out_indices=-1)
    assert positive.out_indices == negative.out_indices == (1, 2, 3)
    assert last.out_indices == (positive.num_stages - 1, )
    assert positive.out_channels == negative.out_channels
    assert last.out_channels == positive.out_channels[-1:]
    assert last.out_strides == positive.out_strides[-1:]
    shapes = [o.shape for o in run(positive.eval())]
    assert [o.shape for o in run(last.eval())] == shapes[-1:]


@pytest.mark.parametrize('name', registered_backbones())
@pytest.mark.parametrize('kwargs, match', [
    (dict(out_indices=(4, )), 'out_indices'),
    (dict(out_indices=(-5, )), 'out_indices'),
    (dict(out_indices=(2, 1)), 'increasing'),
    (dict(out_indices=()), 'out_indices'),
    (dict(frozen_stages=5), 'frozen_stages'),
    (dict(frozen_stages=-2), 'frozen_stages'),
])
def test_bad_stage_arguments_are_named(name, kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        build(name, **kwargs)
    assert name in str(err.value)


@pytest.mark.parametrize('name', registered_backbones())
def test_backward_reaches_every_trainable_parameter(name):
    model = build(name, out_indices=all_stages(name)).train()
    outs = run(model, grad=True)
    sum(o.float().pow(2).mean() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.requires_grad and p.grad is None]
    assert not no_grad, f'{name}: no gradient for {no_grad[:10]}'


@pytest.mark.parametrize('name', registered_backbones())
def test_frozen_stages_freeze_exactly_the_stem_and_k_stages(name):
    num_stages = build(name).num_stages
    for k in range(-1, num_stages + 1):
        model = build(name, frozen_stages=k).train()
        stem, stages = model.stage_module_names()
        assert len(stages) == num_stages
        frozen = stem + [n for stage in stages[:k] for n in stage] if (
            k >= 0) else []
        every = stem + [n for stage in stages for n in stage]

        def under(param_name, prefixes):
            return any(param_name == p or param_name.startswith(p + '.')
                       for p in prefixes)

        params = dict(model.named_parameters())
        orphans = [n for n in params if not under(n, every)]
        assert not orphans, (
            f'{name}: parameters outside the stem and the stages: '
            f'{orphans[:5]}')
        for param_name, param in params.items():
            assert param.requires_grad != under(param_name, frozen), (
                f'{name} frozen_stages={k}: {param_name} requires_grad='
                f'{param.requires_grad}')
        for module_name, module in model.named_modules():
            if under(module_name, frozen):
                assert not module.training, (name, k, module_name)
        if k >= 0:
            assert any(not p.requires_grad for p in params.values())


@pytest.mark.parametrize('name', registered_backbones())
def test_norm_eval_keeps_batchnorm_in_eval_mode(name):
    kwargs = {}
    if not any(isinstance(m, _BatchNorm) for m in build(name).modules()):
        kwargs['norm_cfg'] = dict(type='BN')
    model = build(name, norm_eval=True, **kwargs).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns, f'{name}: no BatchNorm to check'
    assert all(not m.training for m in bns)
    before = [m.running_mean.clone() for m in bns]
    run(model)
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns))
    model = build(name, norm_eval=False, **kwargs).train()
    assert all(m.training for m in model.modules()
               if isinstance(m, _BatchNorm))


@pytest.mark.parametrize('name', registered_backbones())
def test_group_norm_cfg_replaces_every_batchnorm(name):
    model = build(name, norm_cfg=dict(type='GN', num_groups=1)).train()
    assert not any(isinstance(m, _BatchNorm) for m in model.modules()), (
        f'{name}: BatchNorm left although norm_cfg is GN')
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    outs = run(model, grad=True)
    assert all(torch.isfinite(o).all() for o in outs)
