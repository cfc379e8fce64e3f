"""Unit tests of the RT-DETR building blocks."""
import pytest
import torch
import torch.nn.functional as F

from mmdet.registry import MODELS
from rtdetr_zoo.backbones import HGNetv2, ResNetVd
from rtdetr_zoo.layers import (AIFI, CSPRepLayer, RepVGGBlock,
                               build_upsampler,
                               sincos_position_embedding_2d)
from rtdetr_zoo.losses import varifocal_loss
from rtdetr_zoo.necks import HybridEncoder

from .utils import build_detector_from_config


def _ceil_div(a, b):
    return -(-a // b)


@pytest.mark.parametrize('depth,channels', [(18, [128, 256, 512]),
                                            (34, [128, 256, 512]),
                                            (50, [512, 1024, 2048])])
def test_resnet_vd_shapes_odd_size(depth, channels):
    model = ResNetVd(depth=depth).eval()
    assert model.out_channels == channels
    assert model.out_strides == [8, 16, 32]
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 97, 131))
    for out, c, s in zip(outs, channels, model.out_strides):
        assert out.shape == (1, c, _ceil_div(97, s), _ceil_div(131, s))


def test_resnet_vd_has_vd_stem_and_avgpool_shortcut():
    model = ResNetVd(depth=18)
    assert len(model.stem) == 4  # three 3x3 convs and the max-pool
    assert isinstance(model.stages[1][0].shortcut[0], torch.nn.AvgPool2d)
    # Projection shortcut on the first block, as the official PResNet.
    assert not isinstance(model.stages[0][0].shortcut, torch.nn.Identity)
    assert isinstance(model.stages[0][1].shortcut, torch.nn.Identity)


def test_backbone_bad_arguments_are_named():
    with pytest.raises(ValueError, match='depth'):
        ResNetVd(depth=20)
    with pytest.raises(ValueError, match='arch'):
        HGNetv2(arch='XL')


def test_repvgg_switch_to_deploy_is_exact():
    block = RepVGGBlock(8, 8).eval()
    for bn in (block.conv1.bn, block.conv2.bn):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
    x = torch.rand(2, 8, 9, 11)
    before = block(x)
    block.switch_to_deploy()
    assert not hasattr(block, 'conv1')
    torch.testing.assert_close(block(x), before, atol=1e-5, rtol=1e-5)


def test_csp_rep_layer_custom_block_and_shapes():
    layer = CSPRepLayer(16, 8, num_blocks=2, expansion=0.5)
    assert layer(torch.rand(1, 16, 7, 5)).shape == (1, 8, 7, 5)
    assert isinstance(layer.bottlenecks[0], RepVGGBlock)
    assert not isinstance(layer.conv3, torch.nn.Identity)
    layer = CSPRepLayer(16, 8, block_cfg=dict(type='RepVGGBlock',
                                              act_cfg=dict(type='ReLU')))
    assert isinstance(layer.bottlenecks[0].act, torch.nn.ReLU)
    assert isinstance(layer.conv3, torch.nn.Identity)


def test_sincos_position_embedding():
    pos = sincos_position_embedding_2d(3, 5, 8)
    assert pos.shape == (1, 15, 8)
    # token (y=1, x=2): [sin y, sin(y/100)], [cos ...], [sin x, ...], [cos ...]
    token = pos[0, 1 * 5 + 2]
    torch.testing.assert_close(token[0], torch.tensor(1.0).sin())
    torch.testing.assert_close(token[4], torch.tensor(2.0).sin())
    torch.testing.assert_close(token[6], torch.tensor(2.0).cos())
    with pytest.raises(ValueError, match='divisible by 4'):
        sincos_position_embedding_2d(3, 5, 6)


def test_aifi_caches_eval_embedding_and_handles_other_sizes():
    aifi = AIFI(16, num_heads=2, ffn_dim=32, eval_spatial_size=(4, 6)).eval()
    assert aifi.position_embedding(4, 6, 'cpu') is aifi.eval_pos_embed
    assert aifi.position_embedding(5, 6, 'cpu').shape == (1, 30, 16)
    x = torch.rand(2, 16, 5, 7)
    assert aifi(x).shape == x.shape
    aifi.train()
    assert aifi.position_embedding(4, 6, 'cpu') is not aifi.eval_pos_embed


def test_build_upsampler():
    up = build_upsampler(dict(type='nearest', scale_factor=2), 8)
    x = torch.rand(1, 8, 3, 5)
    torch.testing.assert_close(up(x), F.interpolate(x, scale_factor=2))
    with pytest.raises(KeyError, match='NoSuchUpsampler'):
        build_upsampler(dict(type='NoSuchUpsampler'), 8)
    with pytest.raises(ValueError, match='type'):
        build_upsampler(dict(scale_factor=2), 8)


def test_hybrid_encoder_registry_depth_and_errors():
    # Shapes at odd sizes: tests/test_neck_contract.py.
    encoder = MODELS.build(dict(
        type='HybridEncoder', in_channels=[8, 16, 32], hidden_dim=16,
        num_heads=2, ffn_dim=32, expansion=0.5, depth_mult=0.34))
    assert len(encoder.fpn_blocks[0].bottlenecks) == 1
    feats = [torch.rand(2, 8, 13, 17), torch.rand(2, 16, 7, 9),
             torch.rand(2, 32, 4, 5)]
    with pytest.raises(ValueError, match='expects 3 feature maps'):
        encoder(feats[:2])
    with pytest.raises(ValueError, match='use_encoder_idx'):
        HybridEncoder(in_channels=[8, 16], use_encoder_idx=[2])


def test_varifocal_loss_matches_rtdetr_formula():
    torch.manual_seed(0)
    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 2, 3, 3, 1, 3])  # 3 = background
    ious = torch.tensor([0.7, 0.2, 0, 0, 0.9, 0])
    ours = varifocal_loss(logits, labels, ious, alpha=0.75, gamma=2.0)
    onehot = F.one_hot(labels, 4)[:, :3].float()
    target = onehot * ious[:, None]
    p = logits.sigmoid()
    weight = 0.75 * p.pow(2) * (1 - onehot) + target
    ref = F.binary_cross_entropy_with_logits(
        logits, target, weight=weight, reduction='none')
    torch.testing.assert_close(ours, ref)
    # Only the weight of the negatives depends on alpha and gamma.
    other = varifocal_loss(logits, labels, ious, alpha=0.25, gamma=1.0)
    positive = onehot.bool()
    torch.testing.assert_close(other[positive], ours[positive])
    assert not torch.allclose(other[~positive], ours[~positive])


def test_anchors_and_valid_mask():
    model = build_detector_from_config('rtdetr_r18vd_coco')
    shapes = torch.tensor([[4, 4], [2, 2]])
    anchors, valid = model.generate_anchors(shapes, 'cpu', torch.float32)
    assert anchors.shape == (1, 20, 4) and valid.shape == (1, 20, 1)
    first = anchors[0, 0].sigmoid()
    torch.testing.assert_close(first, torch.tensor([0.125, 0.125, 0.05,
                                                    0.05]))
    torch.testing.assert_close(anchors[0, 16, 2:].sigmoid(),
                               torch.tensor([0.1, 0.1]))
    assert valid.all()
    # A 1-pixel-wide level puts anchors at 0.5 but level 5 has w = 1.6 > 1.
    _, valid = model.generate_anchors(
        torch.tensor([[2, 2]] * 6), 'cpu', torch.float32)
    assert valid[0, :16].all() and not valid[0, 20:].any()
    again = model.generate_anchors(shapes, 'cpu', torch.float32)
    assert again[0] is model.generate_anchors(shapes, 'cpu',
                                              torch.float32)[0]


def test_eval_idx_stops_the_decoder():
    model = build_detector_from_config(
        'rtdetr_r18vd_coco', **{'model.decoder.eval_idx': 1})
    model.eval()
    feats = model.extract_feat(torch.rand(1, 3, 128, 128))
    head_inputs = model.forward_transformer(feats, None)
    assert head_inputs['hidden_states'].shape[0] == 2
    model.train()
    with pytest.raises(ValueError, match='eval_idx'):
        build_detector_from_config('rtdetr_r18vd_coco',
                                   **{'model.decoder.eval_idx': 3})


def test_too_small_input_error_is_clear():
    model = build_detector_from_config('rtdetr_r18vd_coco', small=False)
    model.eval()
    feats = model.extract_feat(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match='num_queries=300'):
        model.forward_transformer(feats, None)


def test_r18vd_parameter_count_matches_official():
    model = build_detector_from_config('rtdetr_r18vd_coco', small=False)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - 20_184_464) / 20_184_464 < 1e-3
