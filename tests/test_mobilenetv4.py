"""Tests of the MobileNetV4 backbone (Qin et al., ECCV 2024).

Reference data in ``tests/data`` was produced with timm 1.0.11:
``timm_mobilenetv4_keys.json`` lists ``(key, shape)`` of every tensor of
``timm.create_model('mobilenetv4_<arch>').state_dict()``;
``mobilenetv4_hybrid_medium_timm_ref.pt`` holds timm's stage outputs (the
stride-32 one after ``blocks.4``, ``conv_head``, ``norm_head`` and the
activation, without pooling) for the weights :func:`random_timm_state`
builds from that key list with ``seed=0`` and the input
``torch.randn(1, 3, 45, 61, generator=manual_seed(1))``.
"""
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import rtdetr_zoo  # noqa: F401  (registers the modules)
from rtdetr_zoo.backbones.mobilenetv4 import (ARCH_SETTINGS, MobileMQABlock,
                                              MobileNetV4,
                                              MultiQueryAttention2d,
                                              UniversalInvertedBottleneck,
                                              convert_timm_mobilenetv4)

DATA_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'data')
ARCHS = ('conv_small', 'conv_medium', 'conv_large', 'hybrid_medium',
         'hybrid_large')
# timm's parameter counts minus the 1000-class classifier (1280 * 1000 +
# 1000); conv_small is the MobileNetV4ConvSmall count printed by the blog
# post (docs/mobilenetv4.md).
PARAMS = {'conv_small': 2_493_024, 'conv_medium': 8_434_512,
          'conv_large': 31_309_864, 'hybrid_medium': 9_793_648,
          'hybrid_large': 36_483_624}
WIDTHS = {'conv_small': [32, 64, 96, 1280], 'conv_medium': [48, 80, 160, 1280],
          'conv_large': [48, 96, 192, 1280],
          'hybrid_medium': [48, 80, 160, 1280],
          'hybrid_large': [48, 96, 192, 1280]}


def num_params(module):
    return sum(p.numel() for p in module.parameters())


def timm_keys():
    with open(osp.join(DATA_DIR, 'timm_mobilenetv4_keys.json')) as f:
        return json.load(f)


def random_timm_state(keys_shapes, seed=0):
    """Random tensors in timm's layout with sane BN statistics."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in keys_shapes:
        if key.endswith('num_batches_tracked'):
            state[key] = torch.tensor(0)
        elif key.endswith('running_var'):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith('running_mean') or key.endswith('bias'):
            state[key] = torch.randn(shape, generator=gen) * 0.1
        elif len(shape) == 1:
            state[key] = 1 + 0.2 * torch.randn(shape, generator=gen)
        else:
            fan_in = torch.Size(shape[1:]).numel()
            state[key] = torch.randn(shape, generator=gen) * fan_in**-0.5
    return state


# --------------------------------------------------------------------------
# Architectures


def test_conv_small_parameter_count_matches_blog_post():
    # The blog post prints MobileNetV4ConvSmall (stem, 4 stages, the 960/1280
    # 1x1 convs, no classifier) at 2,493,024 parameters.
    model = MobileNetV4('conv_small')
    assert num_params(model) == 2_493_024
    body = MobileNetV4('conv_small', last_convs=False)
    last = 128 * 960 + 2 * 960 + 960 * 1280 + 2 * 1280
    assert num_params(model) - num_params(body) == last
    assert body.out_channels == [32, 64, 96, 128]


@pytest.mark.parametrize('arch', ARCHS)
def test_arch_shapes_and_counts_at_odd_size(arch):
    model = MobileNetV4(arch).eval()
    assert num_params(model) == PARAMS[arch]
    assert model.out_channels == WIDTHS[arch]
    assert model.out_strides == [4, 8, 16, 32]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 67, 45))
    assert [o.shape[1] for o in outs] == WIDTHS[arch]
    assert [tuple(o.shape[2:]) for o in outs] == [(17, 12), (9, 6), (5, 3),
                                                  (3, 2)]
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize('arch', ARCHS)
def test_arch_blocks_activation_and_layer_scale(arch):
    model = MobileNetV4(arch)
    hybrid = arch.startswith('hybrid')
    acts = {type(m) for m in model.modules()
            if isinstance(m, (nn.ReLU, nn.GELU, nn.ReLU6))}
    assert acts == ({nn.GELU} if arch == 'hybrid_large' else {nn.ReLU})
    mqa = [m for m in model.modules() if isinstance(m, MobileMQABlock)]
    assert len(mqa) == (8 if hybrid else 0)
    if hybrid:
        # Four MQA blocks at stride 16 with kv stride 2, four at stride 32
        # with kv stride 1 (no down-sampling convs there).
        assert [b.attn.kv_stride for b in mqa] == [2] * 4 + [1] * 4
        assert all(hasattr(b.attn, 'key_down') == (b.attn.kv_stride == 2)
                   for b in mqa)
        heads, key_dim = (4, 64) if arch == 'hybrid_medium' else (8, 48)
        assert (mqa[0].attn.num_heads, mqa[0].attn.key_dim,
                mqa[0].attn.value_dim) == (heads, key_dim, key_dim)
    uibs = [m for m in model.modules()
            if isinstance(m, UniversalInvertedBottleneck)]
    for block in uibs + mqa:
        if hybrid:
            assert torch.allclose(block.layer_scale.gamma,
                                  torch.full_like(block.layer_scale.gamma,
                                                  1e-5))
        else:
            assert isinstance(block.layer_scale, nn.Identity)
    # UIB blocks keeping the shape are residual.
    residual = [b.use_shortcut for b in uibs]
    assert any(residual) and not all(residual)


def test_uib_variants_and_residual():
    norm, act = dict(type='BN'), dict(type='ReLU')
    extra_dw = UniversalInvertedBottleneck(8, 8, 3, 5, 1, 2.0, norm, act)
    convnext = UniversalInvertedBottleneck(8, 8, 3, 0, 1, 2.0, norm, act)
    ffn = UniversalInvertedBottleneck(8, 8, 0, 0, 1, 2.0, norm, act)
    down = UniversalInvertedBottleneck(8, 16, 5, 0, 2, 4.0, norm, act)
    assert extra_dw.dw_mid.conv.kernel_size == (5, 5)
    assert isinstance(convnext.dw_mid, nn.Identity)
    assert isinstance(ffn.dw_start, nn.Identity)
    # Without a middle dw conv the start dw conv carries the stride.
    assert down.dw_start.conv.stride == (2, 2) and not down.use_shortcut
    x = torch.randn(2, 8, 9, 7)
    assert down.eval()(x).shape == (2, 16, 5, 4)
    # Residual: zeroing the projection BN leaves the identity.
    nn.init.zeros_(ffn.pw_proj.bn.weight)
    nn.init.zeros_(ffn.pw_proj.bn.bias)
    assert torch.equal(ffn.eval()(x), x)
    with pytest.raises(ValueError, match='depthwise'):
        UniversalInvertedBottleneck(8, 8, 0, 0, 2, 2.0, norm, act)


# --------------------------------------------------------------------------
# Mobile MQA


def reference_mqa(attn, x):
    """Multi-query attention written out with einsum."""
    key_in = attn.key_down(x) if attn.kv_stride > 1 else x
    value_in = attn.value_down(x) if attn.kv_stride > 1 else x
    b, _, h, w = x.shape
    q = attn.query_proj(x).reshape(b, attn.num_heads, attn.key_dim, h * w)
    k = attn.key_proj(key_in).flatten(2)  # (B, dk, M)
    v = attn.value_proj(value_in).flatten(2)  # (B, dv, M)
    logits = torch.einsum('bhdn,bdm->bhnm', q, k) / attn.key_dim**0.5
    out = torch.einsum('bhnm,bdm->bhdn', logits.softmax(-1), v)
    return attn.out_proj(out.reshape(b, -1, h, w))


def test_mqa_kv_stride2_non_square():
    torch.manual_seed(0)
    attn = MultiQueryAttention2d(16, num_heads=4, key_dim=8, value_dim=12,
                                 kv_stride=2).eval()
    # value_dim is the width of the values, not key_dim.
    assert attn.value_proj.out_channels == 12
    assert attn.out_proj.in_channels == 4 * 12
    assert attn.key_down.conv.groups == 16
    assert attn.key_down.conv.stride == (2, 2)
    seen = {}

    def hook(module, inputs, output):
        seen['key'] = tuple(output.shape)

    attn.key_proj.register_forward_hook(hook)
    x = torch.randn(2, 16, 7, 11)
    with torch.no_grad():
        out = attn(x)
    assert out.shape == x.shape
    # Keys at ceil(7 / 2) x ceil(11 / 2) positions.
    assert seen['key'] == (2, 8, 4, 6)
    with torch.no_grad():
        torch.testing.assert_close(out, reference_mqa(attn, x))


@pytest.mark.parametrize('size', [(5, 9), (13, 6), (1, 1)])
def test_mqa_any_map_size(size):
    attn = MultiQueryAttention2d(8, 2, 4, 4, kv_stride=2).eval()
    x = torch.randn(1, 8, *size)
    with torch.no_grad():
        assert attn(x).shape == x.shape


def test_mqa_query_downsampling_uses_the_tensor():
    torch.manual_seed(0)
    attn = MultiQueryAttention2d(8, 2, 4, 6, query_stride=2,
                                 kv_stride=2).eval()
    x = torch.randn(2, 8, 9, 7)
    seen = {}

    def hook(module, inputs, output):
        seen['query_in'] = inputs[0]

    attn.query_proj.register_forward_hook(hook)
    with torch.no_grad():
        out = attn(x)
    assert out.shape == x.shape
    pooled = attn.query_norm(F.avg_pool2d(x, 2, 2, ceil_mode=True))
    torch.testing.assert_close(seen['query_in'], pooled)
    # The query down-sampling norm is really on the path.
    with torch.no_grad():
        attn.query_norm.bias.add_(1.0)
        assert not torch.allclose(attn(x), out)


def test_mqa_block_layer_scale_and_residual():
    block = MobileMQABlock(8, 2, 4, 4, 2, dict(type='BN'),
                           layer_scale_init_value=1e-5).eval()
    x = torch.randn(1, 8, 6, 10)
    with torch.no_grad():
        out = block(x)
        delta = block.layer_scale.gamma.view(1, -1, 1, 1) * block.attn(
            block.norm(x))
    torch.testing.assert_close(out, x + delta)
    assert (out - x).abs().max() < 1e-3


# --------------------------------------------------------------------------
# Arguments (the backbone contract: tests/test_backbone_contract.py)


def test_bad_arguments():
    with pytest.raises(ValueError, match='arch'):
        MobileNetV4('conv_tiny')
    arch = dict(ARCH_SETTINGS['conv_small'])
    arch['stages'] = [[('sep', 16, 3, 2)]] + arch['stages'][1:]
    with pytest.raises(ValueError, match='sep'):
        MobileNetV4(arch)
    with pytest.raises(KeyError, match='checkpoint'):
        MobileNetV4(init_cfg=dict(type='Pretrained')).init_weights()


def test_custom_arch_default_init_is_finite_and_trains():
    # Every block type, MQA with and without kv down-sampling, layer scale.
    arch = dict(stem_channels=8, act_cfg=dict(type='GELU'),
                layer_scale_init_value=1e-5,
                stages=[[('conv', 8, 3, 2), ('conv', 8, 1, 1)],
                        [('fused_ib', 16, 3, 2, 2.0)],
                        [('uib', 24, 3, 5, 2, 2.0), ('mqa', 2, 8, 12, 2)],
                        [('uib', 32, 5, 0, 2, 2.0), ('mqa', 4, 8, 8, 1),
                         ('uib', 32, 0, 0, 1, 2.0)]])
    model = MobileNetV4(arch, last_convs=False)
    assert model.out_channels == [8, 16, 24, 32]
    model.init_weights()
    outs = model(torch.randn(2, 3, 40, 56))
    sum(o.mean() for o in outs).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) == len(list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)


# --------------------------------------------------------------------------
# Loading timm checkpoints


@pytest.mark.parametrize('arch', ARCHS)
def test_timm_key_list_maps_onto_every_tensor(arch):
    state = random_timm_state(timm_keys()['mobilenetv4_' + arch], seed=1)
    converted = convert_timm_mobilenetv4(state)
    assert not any(k.startswith('classifier') for k in converted)
    model = MobileNetV4(arch)
    own = model.state_dict()
    # strict: every tensor of the model comes from the checkpoint.
    assert set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)


@pytest.mark.parametrize('arch', ['conv_small', 'hybrid_medium'])
def test_pretrained_init_cfg_loads_timm_checkpoint(arch, tmp_path):
    state = random_timm_state(timm_keys()['mobilenetv4_' + arch], seed=1)
    converted = convert_timm_mobilenetv4(state)
    ckpt = tmp_path / f'{arch}.pth'
    torch.save(dict(state_dict=state), ckpt)
    loaded = MobileNetV4(arch, init_cfg=dict(type='Pretrained',
                                             checkpoint=str(ckpt)))
    loaded.init_weights()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, converted[key]), key


def test_timm_mapping_examples():
    state = {
        'conv_stem.weight': 0, 'bn1.running_var': 1,
        'blocks.0.0.conv_exp.weight': 2, 'blocks.0.0.bn1.weight': 3,
        'blocks.0.0.conv_pwl.weight': 4, 'blocks.0.0.bn2.bias': 5,
        'blocks.1.0.conv.weight': 6, 'blocks.1.0.bn1.bias': 7,
        'blocks.2.4.attn.key.down_conv.weight': 8,
        'blocks.2.4.attn.value.norm.running_mean': 9,
        'blocks.2.4.attn.output.proj.weight': 10,
        'blocks.2.4.layer_scale.gamma': 11,
        'blocks.4.0.bn1.weight': 12, 'norm_head.bias': 13,
        'classifier.weight': 14, 'foo.bar': 15}
    assert list(convert_timm_mobilenetv4(state).items()) == [
        ('stem.conv.weight', 0), ('stem.bn.running_var', 1),
        ('stages.0.0.conv_exp.conv.weight', 2),
        ('stages.0.0.conv_exp.bn.weight', 3),
        ('stages.0.0.conv_pwl.conv.weight', 4),
        ('stages.0.0.conv_pwl.bn.bias', 5),
        ('stages.1.0.conv.weight', 6), ('stages.1.0.bn.bias', 7),
        ('stages.2.4.attn.key_down.conv.weight', 8),
        ('stages.2.4.attn.value_down.bn.running_mean', 9),
        ('stages.2.4.attn.out_proj.weight', 10),
        ('stages.2.4.layer_scale.gamma', 11),
        ('last_convs.0.bn.weight', 12), ('last_convs.1.bn.bias', 13),
        ('foo.bar', 15)]


def test_timm_stored_reference_outputs():
    # Numerical equivalence with timm without importing it.
    ref = torch.load(
        osp.join(DATA_DIR, 'mobilenetv4_hybrid_medium_timm_ref.pt'))
    state = random_timm_state(timm_keys()['mobilenetv4_hybrid_medium'], 0)
    model = MobileNetV4('hybrid_medium')
    model.load_state_dict(convert_timm_mobilenetv4(state), strict=True)
    x = torch.randn(1, 3, 45, 61, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outs = model.eval()(x)
    assert len(outs) == len(ref['outs']) == 4
    for out, expected in zip(outs, ref['outs']):
        torch.testing.assert_close(out, expected, rtol=1e-4,
                                   atol=1e-4 * expected.abs().max().item())


@pytest.mark.parametrize('arch', ['conv_small', 'hybrid_medium',
                                  'hybrid_large'])
def test_timm_checkpoint_matches_timm_model(arch, tmp_path):
    import timm
    reference = timm.create_model('mobilenetv4_' + arch).eval()
    keys = [(k, list(v.shape)) for k, v in reference.state_dict().items()]
    state = random_timm_state(keys, seed=2)
    reference.load_state_dict(state)
    ckpt = tmp_path / f'{arch}.pth'
    torch.save(state, ckpt)
    model = MobileNetV4(arch, init_cfg=dict(type='Pretrained',
                                            checkpoint=str(ckpt))).eval()
    model.init_weights()
    x = torch.randn(1, 3, 61, 45)
    with torch.no_grad():
        y = reference.bn1(reference.conv_stem(x))
        expected = []
        for stage in reference.blocks[:4]:
            y = stage(y)
            expected.append(y)
        y = reference.blocks[4](y)
        expected[-1] = reference.act2(
            reference.norm_head(reference.conv_head(y)))
        outs = model(x)
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, rtol=1e-4,
                                   atol=1e-4 * ref.abs().max().item())
