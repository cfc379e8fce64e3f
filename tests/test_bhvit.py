"""BHViT's MSGDC token mixer, the CCRI block, CCRINet and their RT-DETR use."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import init_default_scope

from mmdet.registry import MODELS
from rtdetr_zoo.backbones import CCRINet
from rtdetr_zoo.layers import (CCRI, MSGDC, CSPRepLayer, MSGDCBottleneck,
                               RepVGGBlock)
from rtdetr_zoo.layers.msgdc import RPReLU
from rtdetr_zoo.necks import HybridEncoder

from .utils import (build_detector_from_config, load_config,
                    run_loss_and_predict)


def num_params(module):
    return sum(p.numel() for p in module.parameters())


def randomise(module, seed=0):
    """Random values for every parameter (shifts and slopes start at 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return module


# ---------------------------------------------------------------- MSGDC ----
@pytest.mark.parametrize('size', [(7, 9), (5, 3), (1, 1)])
def test_msgdc_shape_and_gradient_odd_sizes(size):
    torch.manual_seed(0)
    mixer = MSGDC(12)
    x = torch.randn(2, 12, *size, requires_grad=True)
    out = mixer(x)
    assert out.shape == x.shape
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad.abs().sum() > 0
    for name, p in mixer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # Every branch receives gradient (at 1x1 only the centre tap is used).
    for conv in mixer.branches:
        assert conv.weight.grad.abs().sum() > 0


def test_msgdc_matches_definition():
    """shift -> 3 grouped dilated convs -> RPReLU each -> sum -> channel LN."""
    torch.manual_seed(0)
    mixer = randomise(MSGDC(8))
    x = torch.randn(2, 8, 11, 6)
    shifted = x + mixer.shift.bias
    total = 0
    for conv, act, d in zip(mixer.branches, mixer.acts, (1, 3, 5)):
        assert conv.weight.shape == (8, 2, 3, 3)  # groups=4: 8/4 in-channels
        assert conv.dilation == (d, d) and conv.bias is not None
        y = F.conv2d(shifted, conv.weight, conv.bias, padding=d, dilation=d,
                     groups=4)
        y = y - act.shift_in
        y = torch.where(y >= 0, y, act.prelu.weight.view(1, -1, 1, 1) * y)
        total = total + y + act.shift_out
    expected = F.layer_norm(
        total.permute(0, 2, 3, 1), (8, ), mixer.norm.weight, mixer.norm.bias,
        1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(mixer(x), expected)


def test_msgdc_default_norm_normalises_each_position():
    torch.manual_seed(0)
    out = MSGDC(16)(torch.randn(3, 16, 5, 7) * 4 + 2)
    torch.testing.assert_close(out.mean(1), torch.zeros(3, 5, 7),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(1, unbiased=False),
                               torch.ones(3, 5, 7), atol=1e-3, rtol=0)


def test_msgdc_dilation_reach():
    """The dilation-5 branch sees 5 px away; without it nothing reaches."""
    mixer = MSGDC(4, norm_cfg=dict(type='BN')).eval()
    x = torch.zeros(1, 4, 13, 13)
    x[..., 6, 6] = 1.0
    with torch.no_grad():
        ref = mixer(torch.zeros_like(x))
        changed = (mixer(x) - ref).abs().sum(1)[0] > 0
    assert changed[6, 1] and changed[6, 11] and changed[1, 1]
    assert not changed[6, 0] and not changed[6, 2] and not changed[4, 2]


def test_rprelu():
    act = randomise(RPReLU(3))
    x = torch.randn(2, 3, 4, 5)
    y = x - act.shift_in
    slope = act.prelu.weight.view(1, -1, 1, 1)
    torch.testing.assert_close(
        act(x), torch.where(y >= 0, y, slope * y) + act.shift_out)


@pytest.mark.parametrize('channels', [6, 10, 3])
def test_msgdc_channels_not_divisible_by_groups(channels):
    with pytest.raises(ValueError, match=rf'in_channels \({channels}\) must '
                       r'be divisible by groups \(4\)'):
        MSGDC(channels)


def test_msgdc_bad_arguments():
    with pytest.raises(ValueError, match='kernel_size must be odd'):
        MSGDC(8, kernel_size=4)
    with pytest.raises(ValueError, match=r'expects \(B, 8, H, W\)'):
        MSGDC(8)(torch.randn(1, 4, 5, 5))


def test_msgdc_registered_and_other_norms():
    init_default_scope('mmdet')
    mixer = MODELS.build(dict(type='MSGDC', in_channels=8,
                              norm_cfg=dict(type='BN')))
    assert isinstance(mixer.norm, nn.BatchNorm2d)
    assert isinstance(MSGDC(8, norm_cfg=dict(type='GN', num_groups=2)).norm,
                      nn.GroupNorm)
    # The default channel LayerNorm is a LayerNorm for optimiser constructors.
    assert isinstance(MSGDC(8).norm, nn.LayerNorm)


# ----------------------------------------------------------------- CCRI ----
def test_ccri_shapes_n_and_e():
    block = CCRI(24, 40, k=3, n=3, lightconv=True, e=0.5)
    assert block.hidden == 20
    assert block.cv1.conv.out_channels == 40  # 2 * int(c2 * e)
    assert len(block.blocks) == 3
    assert block.cv2.conv.in_channels == (2 + 3) * 20  # dense C2f concat
    x = torch.randn(2, 24, 9, 7, requires_grad=True)
    out = block(x)
    assert out.shape == (2, 40, 9, 7)
    out.sum().backward()
    assert x.grad.abs().sum() > 0


def test_ccri_forward_is_split_chain_concat_fuse():
    torch.manual_seed(0)
    block = CCRI(8, 16, n=2, lightconv=True, shortcut=True).eval()
    x = torch.randn(1, 8, 6, 5)
    with torch.no_grad():
        a, b = block.cv1(x).chunk(2, dim=1)
        b1 = block.blocks[0](b)
        b2 = block.blocks[1](b1)
        expected = block.cv2(torch.cat([a, b, b1, b2], dim=1))
        torch.testing.assert_close(block(x), expected)


def test_ccri_lightconv_selects_mixer_and_k_its_kernel():
    light = CCRI(16, 16, k=5, n=2, lightconv=True)
    for b in light.blocks:
        assert isinstance(b.mixer, MSGDC)
        assert all(c.kernel_size == (5, 5) for c in b.mixer.branches)
        assert [c.padding for c in b.mixer.branches] == [(2, 2), (6, 6),
                                                         (10, 10)]
    assert light(torch.randn(1, 16, 7, 5)).shape == (1, 16, 7, 5)
    rep = CCRI(16, 16, k=3, n=2, lightconv=False)
    assert all(isinstance(b.mixer, RepVGGBlock) for b in rep.blocks)
    with pytest.raises(ValueError, match='kernel_size must be 3'):
        CCRI(16, 16, k=5, lightconv=False)
    # MSGDC has fewer weights than the RepConv (3 x 1/4 vs 1 + 1/9 of 9 C^2).
    light3 = CCRI(16, 16, k=3, n=1, lightconv=True)
    assert num_params(light3.blocks[0].mixer) < num_params(
        rep.blocks[0].mixer)


def test_ccri_scale_is_mlp_expansion():
    block = CCRI(16, 32, n=1, scale=3.0, e=0.5)
    mlp = block.blocks[0].mlp
    assert mlp[0].conv.in_channels == 16 and mlp[0].conv.out_channels == 48
    assert mlp[1].conv.out_channels == 16


@pytest.mark.parametrize('lightconv', [True, False])
def test_ccri_shortcut(lightconv):
    """With the MLP's last BN zeroed: shortcut -> x + mixer(x), else 0."""
    torch.manual_seed(0)
    for shortcut in (True, False):
        block = CCRI(8, 8, n=1, lightconv=lightconv, shortcut=shortcut,
                     e=1.0).blocks[0].eval()
        nn.init.zeros_(block.mlp[1].bn.weight)
        nn.init.zeros_(block.mlp[1].bn.bias)
        x = torch.randn(2, 8, 5, 7)
        with torch.no_grad():
            out = block(x)
            if shortcut:
                torch.testing.assert_close(out, x + block.mixer(x))
            else:
                assert out.abs().max() == 0


def test_ccri_act():
    assert isinstance(CCRI(8, 8, act=True).cv1.activate, nn.SiLU)
    assert not CCRI(8, 8, act=False).cv1.with_activation
    relu = CCRI(8, 8, act=dict(type='ReLU'))
    assert isinstance(relu.cv2.activate, nn.ReLU)
    assert isinstance(relu.blocks[0].mlp[0].activate, nn.ReLU)
    with pytest.raises(ValueError, match='act must be True'):
        CCRI(8, 8, act='relu')


def test_ccri_bad_arguments():
    with pytest.raises(ValueError, match=r'int\(c2 \* e\) = 6 .* divisible '
                       r'by 4'):
        CCRI(8, 12, lightconv=True, e=0.5)
    CCRI(8, 12, lightconv=False, e=0.5)  # RepConv has no groups constraint
    with pytest.raises(ValueError, match='n .* must be >= 1'):
        CCRI(8, 8, n=0)
    with pytest.raises(ValueError, match="mixer must be one of"):
        MSGDCBottleneck(8, 8, mixer='conv')


# -------------------------------------------------------------- CCRINet ----
# Output channels at strides 8/16/32 and CCRI depths per Ultralytics scale.
SCALES = {
    'n': ([64, 128, 256], [1, 1, 1]),
    's': ([128, 256, 512], [1, 1, 1]),
    'm': ([192, 384, 576], [3, 3, 1]),
    'l': ([256, 512, 512], [4, 4, 2]),
    'x': ([320, 640, 640], [4, 4, 2]),
}


@pytest.mark.parametrize('arch', list(SCALES))
def test_ccrinet_scales(arch):
    channels, depths = SCALES[arch]
    net = CCRINet(arch=arch)
    assert net.out_channels == channels and net.out_strides == [8, 16, 32]
    assert [len(s[1].blocks) for s in net.stages[1:]] == depths
    shortcuts = [s[1].blocks[0].shortcut for s in net.stages[1:]]
    assert shortcuts == [True, True, False]
    assert all(isinstance(s[1].blocks[0].mixer, MSGDC)
               for s in net.stages[1:])


def test_ccrinet_l_parameter_count():
    assert num_params(CCRINet(arch='l')) == 11_101_632


def test_ccrinet_l_forward_backward_odd_size():
    net = CCRINet(arch='l')
    x = torch.randn(1, 3, 75, 53)
    outs = net(x)
    assert [tuple(o.shape) for o in outs] == [(1, 256, 10, 7),
                                              (1, 512, 5, 4),
                                              (1, 512, 3, 2)]
    sum(o.mean() for o in outs).backward()
    assert all(p.grad is not None for p in net.parameters())


def test_ccrinet_pretrained_init_cfg(tmp_path):
    torch.manual_seed(0)
    src = randomise(CCRINet(arch='n'))
    path = str(tmp_path / 'ccrinet_n.pth')
    torch.save(src.state_dict(), path)
    dst = CCRINet(arch='n', init_cfg=dict(type='Pretrained', checkpoint=path))
    dst.init_weights()
    for (name, a), b in zip(src.state_dict().items(),
                            dst.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_ccrinet_ccri_cfg_and_bad_arguments():
    net = CCRINet(arch='n', ccri_cfg=dict(lightconv=False, scale=1.0))
    assert all(isinstance(s[1].blocks[0].mixer, RepVGGBlock)
               for s in net.stages[1:])
    with pytest.raises(ValueError, match="cannot set 'n'"):
        CCRINet(arch='n', ccri_cfg=dict(n=3))
    with pytest.raises(ValueError, match='arch must be one of'):
        CCRINet(arch='q')
    with pytest.raises(ValueError, match='missing'):
        CCRINet(arch=dict(depth=1.0, width=1.0))
    with pytest.raises(ValueError, match='out_indices'):
        CCRINet(out_indices=(1, 4))
    with pytest.raises(ValueError, match='frozen_stages'):
        CCRINet(frozen_stages=5)


# ----------------------------------------------------------- neck / CSP ----
def test_csp_rep_layer_with_msgdc_bottleneck():
    init_default_scope('mmdet')
    layer = CSPRepLayer(24, 16, num_blocks=2,
                        block_cfg=dict(type='MSGDCBottleneck', mlp_ratio=1.0))
    assert all(isinstance(b, MSGDCBottleneck) for b in layer.bottlenecks)
    assert all(isinstance(b.mixer, MSGDC) for b in layer.bottlenecks)
    x = torch.randn(2, 24, 9, 5, requires_grad=True)
    out = layer(x)
    assert out.shape == (2, 16, 9, 5)
    out.sum().backward()
    assert layer.bottlenecks[1].mixer.branches[2].weight.grad.abs().sum() > 0
    rep = CSPRepLayer(24, 16, num_blocks=1, block_cfg=dict(
        type='MSGDCBottleneck', mixer='repconv'))
    assert isinstance(rep.bottlenecks[0].mixer, RepVGGBlock)


def test_hybrid_encoder_msgdc_neck_odd_sizes():
    init_default_scope('mmdet')
    neck = HybridEncoder(
        in_channels=[16, 24, 24], hidden_dim=32, num_heads=2, ffn_dim=32,
        depth_mult=2 / 3,
        csp_block_cfg=dict(type='MSGDCBottleneck', mlp_ratio=1.0))
    for csp in list(neck.fpn_blocks) + list(neck.pan_blocks):
        assert len(csp.bottlenecks) == 2
        assert all(isinstance(b, MSGDCBottleneck) for b in csp.bottlenecks)
    feats = [torch.randn(1, 16, 13, 17), torch.randn(1, 24, 7, 9),
             torch.randn(1, 24, 4, 5)]
    outs = neck(feats)
    assert [tuple(o.shape) for o in outs] == [(1, 32, 13, 17), (1, 32, 7, 9),
                                              (1, 32, 4, 5)]


# -------------------------------------------------------------- configs ----
def test_configs():
    cfg = load_config('rtdetr_bhvit.py')
    assert cfg.model.backbone.type == 'CCRINet'
    assert cfg.model.backbone.arch == 'l'
    assert cfg.model.neck.in_channels == [256, 512, 512]
    assert round(3 * cfg.model.neck.depth_mult) == 2  # blog post: RepC4 x 2
    assert cfg.model.neck.get('csp_block_cfg') is None
    assert cfg.model.neck.num_encoder_layers == 1  # AIFI(1024, 8)
    assert cfg.model.neck.ffn_dim == 1024 and cfg.model.neck.num_heads == 8
    neck_cfg = load_config('rtdetr_bhvit_msgdc_neck.py')
    assert neck_cfg.model.neck.csp_block_cfg.type == 'MSGDCBottleneck'
    raccoon = load_config('rtdetr_bhvit_raccoon.py')
    assert raccoon.model.backbone.type == 'CCRINet'
    assert raccoon.model.bbox_head.num_classes == 1
    assert raccoon.model.neck.in_channels == [256, 512, 512]


def test_full_model_parameter_counts():
    model = build_detector_from_config('rtdetr_bhvit.py', small=False)
    assert num_params(model) == 27_303_372
    assert num_params(model.backbone) == 11_101_632
    assert num_params(model.neck) == 8_735_488
    init_default_scope('mmdet')
    neck = MODELS.build(load_config('rtdetr_bhvit_msgdc_neck.py').model.neck)
    csp = neck.fpn_blocks[0]
    assert all(isinstance(b, MSGDCBottleneck) for b in csp.bottlenecks)
    # Whole neck-variant model: 27,731,404 parameters.
    assert num_params(neck) == 8_735_488 + 428_032


# The neck-variant test uses the `n` backbone scale to stay fast on a CPU.
@pytest.mark.parametrize('config,options', [
    ('rtdetr_bhvit_raccoon.py', {}),
    ('rtdetr_bhvit_msgdc_neck.py', {
        'model.backbone.arch': 'n', 'model.neck.in_channels': [64, 128, 256]
    }),
])
def test_detector_loss_and_predict(config, options):
    torch.manual_seed(0)
    model = build_detector_from_config(config, **options)
    losses, results = run_loss_and_predict(model, sizes=((97, 131), (80, 64)))
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert losses['loss_cls'] > 0 and losses['loss_bbox'] > 0
    grads = [p.grad for p in model.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.backbone.stages[1][1].blocks[0].mixer.branches[2] \
        .weight.grad.abs().sum() > 0
    if isinstance(model.neck.fpn_blocks[0].bottlenecks[0], MSGDCBottleneck):
        mixer = model.neck.pan_blocks[-1].bottlenecks[0].mixer
        assert mixer.branches[0].weight.grad.abs().sum() > 0
    assert len(results) == 2
    for res, (h, w) in zip(results, ((97, 131), (80, 64))):
        boxes = res.pred_instances.bboxes
        assert boxes.shape[1] == 4 and len(boxes) > 0
        assert (boxes[:, 0::2] <= w + 1e-3).all()
        assert (boxes[:, 1::2] <= h + 1e-3).all()
