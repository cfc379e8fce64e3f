"""Tests of the RMT backbone (Fan et al., CVPR 2024) and its RT-DETR
configs."""
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

import rtdetr_zoo  # noqa: F401  (registers the modules)
from mmdet.registry import MODELS
from rtdetr_zoo.backbones.rmt import (ARCH_SETTINGS, RMT,
                                      convert_official_rmt,
                                      is_official_rmt_layout)
from rtdetr_zoo.layers.retention import ManhattanDecay

from .utils import (build_detector_from_config, config_path,
                    run_loss_and_predict)

# Three stages exercising decomposed MaSA, full MaSA, patch merging and layer
# scale at a size that runs in milliseconds. Head dims 8 / 16 / 12.
TINY = dict(embed_dims=(16, 32, 48), depths=(1, 1, 2), num_heads=(2, 2, 4),
            heads_ranges=(4, 4, 6), mlp_ratios=(2, 2, 3),
            decomposed=(True, True, False), layer_scales=(False, True, True),
            layer_scale_init=0.5)


def tiny_rmt(**kwargs):
    kwargs.setdefault('out_indices', (0, 1, 2))
    model = RMT(arch=TINY, **kwargs)
    model.init_weights()
    return model


def num_params(module):
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------
# Named archs: parameter counts against the blog post (docs/rmt.md) and the
# paper


def test_blog_post_parameter_count_reproduced():
    # The blog post's RMT_T (stage outputs at strides 4/8/16/32, no classifier)
    # prints 12,678,176 parameters. Its copy drops the official FFN
    # depthwise conv and has no output norms; with both off we match it.
    blog_like = RMT(arch='t', out_indices=(0, 1, 2, 3), ffn_dwconv=False,
                    out_norm=False, use_rope=False)
    assert num_params(blog_like) == 12_678_176
    # The official block adds a 3x3 depthwise conv (+bias) on the FFN hidden
    # width of every block: sum(depth * 10 * mlp_ratio * dim).
    default = RMT(arch='t', out_indices=(0, 1, 2, 3), out_norm=False)
    dwconv = sum(d * 10 * 3 * c for d, c in zip((2, 2, 8, 2),
                                                (64, 128, 256, 512)))
    assert num_params(default) - num_params(blog_like) == dwconv == 103_680


@pytest.mark.parametrize('arch,paper_m,dims', [
    ('t', 14, (64, 128, 256, 512)), ('s', 27, (64, 128, 256, 512)),
    ('b', 54, (80, 160, 320, 512)), ('l', 95, (112, 224, 448, 640))])
def test_named_arch_matches_paper(arch, paper_m, dims):
    model = RMT(arch=arch, out_norm=False, out_indices=(0, 1, 2, 3))
    assert model.out_channels == list(dims)
    assert model.out_strides == [4, 8, 16, 32]
    # Official ImageNet classifier: Linear(C4, 1024) + BN(1024) +
    # Linear(1024, 1000).
    head = dims[-1] * 1024 + 1024 + 2 * 1024 + 1024 * 1000 + 1000
    assert round((num_params(model) + head) / 1e6) == paper_m
    decomposed = [s.decay.decomposed for s in model.stages]
    assert decomposed == list(ARCH_SETTINGS[arch]['decomposed'])
    scaled = [s.blocks[0].gamma1 is not None for s in model.stages]
    assert scaled == ([False] * 4 if arch in 'ts' else
                      [False, False, True, True])


@pytest.mark.parametrize('arch', ['t', 's', 'b', 'l'])
def test_named_arch_tiny_forward(arch):
    model = RMT(arch=arch, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == model.out_channels
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 24), (8, 12), (4, 6),
                                                  (2, 3)]
    assert all(torch.isfinite(o).all() for o in outs)


# --------------------------------------------------------------------------
# Shapes, masks, cache


def test_decay_masks_values_and_cache():
    decay = ManhattanDecay(32, 4, init_value=2, heads_range=4,
                           decomposed=False)
    gamma = 1 - 2**(-2 - 4 * torch.arange(4.) / 4)
    rotation, mask = decay(3, 5)
    assert mask.shape == (4, 15, 15)
    assert rotation[0].shape == (3, 5, 8)
    # token (0, 1) vs token (2, 4): Manhattan distance 2 + 3.
    assert torch.allclose(mask[:, 1, 2 * 5 + 4], 5 * gamma.log())
    assert decay(3, 5) is decay(3, 5)  # cached, not rebuilt
    decomposed = ManhattanDecay(32, 4, 2, 4, decomposed=True, cache_size=2)
    _, (mask_h, mask_w) = decomposed(3, 5)
    assert mask_h.shape == (4, 3, 3) and mask_w.shape == (4, 5, 5)
    assert torch.allclose(mask_w[:, 0, 4], 4 * gamma.log())
    first = decomposed(3, 5)
    decomposed(4, 4)
    decomposed(5, 4)
    assert len(decomposed._cache) == 2
    assert decomposed(3, 5) is not first  # evicted (LRU of 2), rebuilt


# --------------------------------------------------------------------------
# Norms, drop path, checkpointing, arguments (the backbone contract:
# tests/test_backbone_contract.py)


def test_plain_bn_by_default():
    model = tiny_rmt()
    assert not any(isinstance(m, torch.nn.SyncBatchNorm)
                   for m in model.modules())


def test_drop_path_rates_and_checkpointing():
    model = RMT(arch=TINY, out_indices=(2, ), drop_path_rate=0.3)
    rates = [b.drop_path.drop_prob for s in model.stages for b in s.blocks
             if hasattr(b.drop_path, 'drop_prob')]
    assert rates == pytest.approx([0.1, 0.2, 0.3])  # first block: Identity
    torch.manual_seed(0)
    plain = tiny_rmt(drop_path_rate=0.0).train()
    ckpt = tiny_rmt(drop_path_rate=0.0, with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 40, 36)
    grads = []
    for model in (plain, ckpt):
        sum(o.square().mean() for o in model(x)).backward()
        grads.append(model.stages[1].blocks[0].attn.k_proj.weight.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match='arch'):
        RMT(arch='x')
    with pytest.raises(KeyError, match='num_heads'):
        RMT(arch=dict(embed_dims=(8, ), depths=(1, ), heads_ranges=(4, ),
                      mlp_ratios=(2, )))
    with pytest.raises(ValueError, match='heads_ranges'):
        RMT(arch=dict(TINY, heads_ranges=(4, 4)))
    with pytest.raises(ValueError, match='divisible'):
        RMT(arch=dict(TINY, num_heads=(3, 2, 4)))
    with pytest.raises(ValueError, match='out_indices'):
        RMT(arch=TINY, out_indices=(3, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        RMT(arch=TINY, out_indices=(2, ), frozen_stages=5)
    with pytest.raises(ValueError, match='even head dimension'):
        RMT(arch=dict(TINY, embed_dims=(18, 32, 48)), out_indices=(2, ))


# --------------------------------------------------------------------------
# Official checkpoint layout


def official_state_dict(arch, seed=0):
    """Random tensors under the official qhfan/RMT key names and shapes.

    Includes the ImageNet classifier (``proj/norm/head``), the decay buffers
    (``Relpos``) and the detection backbone's ``extra_norms``.
    """
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.2):
        return torch.randn(*shape, generator=gen) * scale

    def bn(prefix, c):
        return {f'{prefix}.weight': 1 + rand(c), f'{prefix}.bias': rand(c),
                f'{prefix}.running_mean': rand(c),
                f'{prefix}.running_var': 1 + rand(c).abs(),
                f'{prefix}.num_batches_tracked': torch.tensor(7)}

    def linear(prefix, cin, cout):
        return {f'{prefix}.weight': rand(cout, cin),
                f'{prefix}.bias': rand(cout)}

    def dw(prefix, c, k):
        return {f'{prefix}.weight': rand(c, 1, k, k),
                f'{prefix}.bias': rand(c)}

    dims, depths = arch['embed_dims'], arch['depths']
    sd = OrderedDict()
    c0 = dims[0]
    for conv, norm, cin, cout in ((0, 1, 3, c0 // 2), (3, 4, c0 // 2, c0 // 2),
                                  (6, 7, c0 // 2, c0), (9, 10, c0, c0)):
        sd[f'patch_embed.proj.{conv}.weight'] = rand(cout, cin, 3, 3)
        sd[f'patch_embed.proj.{conv}.bias'] = rand(cout)
        sd.update(bn(f'patch_embed.proj.{norm}', cout))
    for i, (c, depth) in enumerate(zip(dims, depths)):
        heads = arch['num_heads'][i]
        hidden = int(arch['mlp_ratios'][i] * c)
        sd[f'layers.{i}.Relpos.angle'] = rand(c // heads)
        sd[f'layers.{i}.Relpos.decay'] = rand(heads)
        for j in range(depth):
            p = f'layers.{i}.blocks.{j}.'
            sd.update(dw(p + 'pos.conv', c, 3))
            sd[p + 'retention_layer_norm.weight'] = 1 + rand(c)
            sd[p + 'retention_layer_norm.bias'] = rand(c)
            for name in ('q_proj', 'k_proj', 'v_proj', 'out_proj'):
                sd.update(linear(p + 'retention.' + name, c, c))
            sd.update(dw(p + 'retention.lepe.conv', c, 5))
            sd[p + 'final_layer_norm.weight'] = 1 + rand(c)
            sd[p + 'final_layer_norm.bias'] = rand(c)
            sd.update(linear(p + 'ffn.fc1', c, hidden))
            sd.update(linear(p + 'ffn.fc2', hidden, c))
            sd.update(dw(p + 'ffn.dwconv.conv', hidden, 3))
            if arch['layer_scales'][i]:
                sd[p + 'gamma_1'] = 1 + rand(1, 1, 1, c)
                sd[p + 'gamma_2'] = 1 + rand(1, 1, 1, c)
        if i + 1 < len(dims):
            sd[f'layers.{i}.downsample.reduction.weight'] = rand(
                dims[i + 1], c, 3, 3)
            sd[f'layers.{i}.downsample.reduction.bias'] = rand(dims[i + 1])
            sd.update(bn(f'layers.{i}.downsample.norm', dims[i + 1]))
        sd[f'extra_norms.{i}.weight'] = 1 + rand(c)
        sd[f'extra_norms.{i}.bias'] = rand(c)
    sd.update(linear('proj', dims[-1], 8))
    sd.update(bn('norm', 8))
    sd.update(linear('head', 8, 10))
    return sd


def reference_forward(sd, arch, x):
    """The official RMT detection forward, written functionally from the
    paper / official semantics on the official state dict (explicit softmax,
    decay masks from pairwise L1 distances, W-then-H decomposition)."""

    def bn(x, p):
        return F.batch_norm(x, sd[p + '.running_mean'], sd[p + '.running_var'],
                            sd[p + '.weight'], sd[p + '.bias'], False, 0.0,
                            1e-5)

    def dw(x, p, pad):  # (B, H, W, C)
        w = sd[p + '.weight']
        return F.conv2d(x.permute(0, 3, 1, 2), w, sd[p + '.bias'], 1, pad,
                        groups=w.shape[0]).permute(0, 2, 3, 1)

    def lin(x, p):
        return F.linear(x, sd[p + '.weight'], sd[p + '.bias'])

    def rotate(t, sin, cos):
        t2 = t.clone()
        t2[..., 0::2], t2[..., 1::2] = -t[..., 1::2], t[..., 0::2]
        return t * cos + t2 * sin

    for conv, norm, stride, act in ((0, 1, 2, True), (3, 4, 1, True),
                                    (6, 7, 2, True), (9, 10, 1, False)):
        x = F.conv2d(x, sd[f'patch_embed.proj.{conv}.weight'],
                     sd[f'patch_embed.proj.{conv}.bias'], stride, 1)
        x = bn(x, f'patch_embed.proj.{norm}')
        x = F.gelu(x) if act else x
    x = x.permute(0, 2, 3, 1)
    outs = []
    for i, c in enumerate(arch['embed_dims']):
        b, h, w, _ = x.shape
        n = arch['num_heads'][i]
        d = c // n
        gamma = 1 - 2**(-2.0 - arch['heads_ranges'][i] * torch.arange(
            n, dtype=torch.float) / n)
        angle = 1.0 / (10000**torch.linspace(0, 1, d // 2))
        angle = torch.stack([angle, angle], -1).flatten()
        theta = torch.arange(h * w).float()[:, None] * angle
        sin = theta.sin().reshape(h, w, d)
        cos = theta.cos().reshape(h, w, d)
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w),
                                indexing='ij')
        coords = torch.stack([ys.flatten(), xs.flatten()], -1).float()
        full = torch.cdist(coords, coords, p=1)[None] * gamma.log()[:, None,
                                                                    None]
        line_h = (torch.arange(h)[:, None] - torch.arange(h)[None]).abs()
        line_w = (torch.arange(w)[:, None] - torch.arange(w)[None]).abs()
        mask_h = line_h[None] * gamma.log()[:, None, None]
        mask_w = line_w[None] * gamma.log()[:, None, None]
        for j in range(arch['depths'][i]):
            p = f'layers.{i}.blocks.{j}.'
            x = x + dw(x, p + 'pos.conv', 1)
            y = F.layer_norm(x, (c, ), sd[p + 'retention_layer_norm.weight'],
                             sd[p + 'retention_layer_norm.bias'], 1e-6)
            q = lin(y, p + 'retention.q_proj')
            k = lin(y, p + 'retention.k_proj') * d**-0.5
            v = lin(y, p + 'retention.v_proj')
            lepe = dw(v, p + 'retention.lepe.conv', 2)
            q = rotate(q.view(b, h, w, n, d).permute(0, 3, 1, 2, 4), sin, cos)
            k = rotate(k.view(b, h, w, n, d).permute(0, 3, 1, 2, 4), sin, cos)
            v = v.view(b, h, w, n, d).permute(0, 3, 1, 2, 4)  # (b n h w d)
            if arch['decomposed'][i]:
                att = torch.einsum('bnhwd,bnhvd->bnhwv', q, k) + mask_w[
                    None, :, None]
                v = torch.einsum('bnhwv,bnhvd->bnhwd', att.softmax(-1), v)
                att = torch.einsum('bnhwd,bnuwd->bnwhu', q, k) + mask_h[
                    None, :, None]
                o = torch.einsum('bnwhu,bnuwd->bnhwd', att.softmax(-1), v)
            else:
                qf, kf, vf = (t.reshape(b, n, h * w, d) for t in (q, k, v))
                att = (qf @ kf.transpose(-1, -2) + full[None]).softmax(-1)
                o = (att @ vf).view(b, n, h, w, d)
            o = o.permute(0, 2, 3, 1, 4).reshape(b, h, w, c) + lepe
            o = lin(o, p + 'retention.out_proj')
            if p + 'gamma_1' in sd:
                o = o * sd[p + 'gamma_1']
            x = x + o
            y = F.layer_norm(x, (c, ), sd[p + 'final_layer_norm.weight'],
                             sd[p + 'final_layer_norm.bias'], 1e-6)
            hid = F.gelu(lin(y, p + 'ffn.fc1'))
            hid = hid + dw(hid, p + 'ffn.dwconv.conv', 1)
            o = lin(hid, p + 'ffn.fc2')
            if p + 'gamma_2' in sd:
                o = o * sd[p + 'gamma_2']
            x = x + o
        outs.append(F.layer_norm(x, (c, ), sd[f'extra_norms.{i}.weight'],
                                 sd[f'extra_norms.{i}.bias']).permute(
                                     0, 3, 1, 2))
        if f'layers.{i}.downsample.reduction.weight' in sd:
            x = F.conv2d(x.permute(0, 3, 1, 2),
                         sd[f'layers.{i}.downsample.reduction.weight'],
                         sd[f'layers.{i}.downsample.reduction.bias'], 2, 1)
            x = bn(x, f'layers.{i}.downsample.norm').permute(0, 2, 3, 1)
    return outs


def test_official_layout_converts_completely():
    official = official_state_dict(TINY)
    assert is_official_rmt_layout(official)
    model = RMT(arch=TINY, out_indices=(0, 1, 2))
    converted = convert_official_rmt(official, model.out_indices)
    assert not is_official_rmt_layout(converted)
    model.load_state_dict(converted, strict=True)  # every key maps 1:1
    assert torch.equal(
        model.stages[2].blocks[1].gamma2,
        official['layers.2.blocks.1.gamma_2'].flatten())
    assert torch.equal(model.stages[1].downsample.conv.weight,
                       official['layers.0.downsample.reduction.weight'])
    subset = convert_official_rmt(official, out_indices=(2, ))
    assert not any(k.startswith(('out_norms.0', 'out_norms.1'))
                   for k in subset)


def test_official_checkpoint_loads_via_init_cfg_and_matches_reference(
        tmp_path):
    official = official_state_dict(TINY)
    path = tmp_path / 'rmt_official.pth'
    torch.save({'model': official}, path)
    model = RMT(arch=TINY, out_indices=(0, 1, 2),
                init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    model.eval()
    x = torch.randn(2, 3, 37, 45)
    with torch.no_grad():
        ours = model(x)
        expected = reference_forward(official, TINY, x)
    for out, ref in zip(ours, expected):
        assert out.shape == ref.shape
        assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4), (
            (out - ref).abs().max())


def test_own_layout_checkpoint_with_prefix(tmp_path):
    source = tiny_rmt().eval()
    path = tmp_path / 'detector.pth'
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in source.state_dict().items()}},
               path)
    model = RMT(arch=TINY, out_indices=(0, 1, 2), init_cfg=dict(
        type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    model.init_weights()
    model.eval()
    x = torch.randn(1, 3, 40, 44)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(x), source(x)))
    missing = RMT(arch=TINY, out_indices=(2, ), init_cfg=dict(
        type='Pretrained',
        checkpoint=str(path), prefix='neck.'))
    with pytest.raises(KeyError, match='prefix'):
        missing.init_weights()


# --------------------------------------------------------------------------
# RT-DETR configs


@pytest.mark.parametrize('name,arch,channels', [
    ('rtdetr_rmt_t', 't', [128, 256, 512]),
    ('rtdetr_rmt_s', 's', [128, 256, 512]),
    ('rtdetr_rmt_b', 'b', [160, 320, 512]),
    ('rtdetr_rmt_l', 'l', [224, 448, 640]),
    ('rtdetr_rmt_t_raccoon', 't', [128, 256, 512])])
def test_configs_wire_backbone_to_neck(name, arch, channels):
    cfg = Config.fromfile(config_path(name))
    backbone = cfg.model.backbone
    assert backbone.type == 'RMT' and backbone.arch == arch
    assert 'depth' not in backbone  # base ResNet keys deleted
    assert cfg.model.neck.in_channels == channels
    dims = ARCH_SETTINGS[arch]['embed_dims']
    assert [dims[i] for i in backbone.out_indices] == channels


def test_rtdetr_rmt_t_loss_and_predict():
    torch.manual_seed(0)
    model = build_detector_from_config('rtdetr_rmt_t')
    assert isinstance(model.backbone, RMT)
    losses, results = run_loss_and_predict(model)
    total = sum(v.sum() for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    grad = model.backbone.stages[0].blocks[0].attn.q_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert len(results) == 2
    for sample, (h, w) in zip(results, ((96, 128), (112, 80))):
        boxes = sample.pred_instances.bboxes
        assert boxes.shape[1] == 4 and len(boxes) > 0
        assert (boxes[:, 2] <= w + 1e-3).all() and (
            boxes[:, 3] <= h + 1e-3).all()


def test_rtdetr_rmt_t_raccoon_builds():
    model = build_detector_from_config('rtdetr_rmt_t_raccoon')
    assert isinstance(model.backbone, RMT)
    assert model.bbox_head.num_classes == 1
    assert MODELS.get('RMT') is RMT
