"""Tests of the BiFPN weighted fusion and the BiFPN RT-DETR encoder of the
MobileNetV4 + BiFPN blog post (docs/mobilenetv4.md)."""
import pytest
import torch
import torch.nn.functional as F

import rtdetr_zoo  # noqa: F401  (registers the modules)
from mmdet.registry import MODELS
from rtdetr_zoo.layers import CSPRepLayer, WeightedFusion
from rtdetr_zoo.necks.bifpn import BiFPNHybridEncoder
from .utils import build_detector_from_config, run_loss_and_predict

# A structurally complete but tiny encoder (P2-P5 inputs).
TINY = dict(in_channels=[8, 12, 16, 24], hidden_dim=16, num_heads=2,
            ffn_dim=32, depth_mult=1 / 3)
STRIDES = (4, 8, 16, 32)


def num_params(module):
    return sum(p.numel() for p in module.parameters())


def pyramid(height, width, channels=(8, 12, 16, 24), batch=2,
            requires_grad=False):
    return [
        torch.randn(batch, c, -(-height // s), -(-width // s),
                    requires_grad=requires_grad)
        for c, s in zip(channels, STRIDES)
    ]


# --------------------------------------------------------------------------
# Weighted fusion


def test_fast_normalized_fusion_formula():
    fusion = WeightedFusion(2)
    assert fusion.eps == 1e-4 and fusion.weight_act == 'relu'
    with torch.no_grad():
        fusion.weight.copy_(torch.tensor([1.0, -2.0]))
        x0, x1 = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
        # relu(-2) = 0: only the first input contributes.
        torch.testing.assert_close(fusion([x0, x1]), x0 / (1 + 1e-4))
        fusion.weight.copy_(torch.tensor([1.0, 3.0]))
        torch.testing.assert_close(fusion([x0, x1]),
                                   (x0 + 3 * x1) / (4 + 1e-4))


def test_swish_fusion_reproduces_blog_post_normalisation():
    fusion = WeightedFusion(3, weight_act='swish')
    with torch.no_grad():
        fusion.weight.copy_(torch.tensor([0.5, -1.0, 2.0]))
    xs = [torch.randn(1, 2, 3, 3) for _ in range(3)]
    w = fusion.weight.detach()
    coeff = w / (F.silu(w).sum() + 1e-4)
    with torch.no_grad():
        expected = sum(c * x for c, x in zip(coeff, xs))
        torch.testing.assert_close(fusion(xs), expected)
    assert (fusion.normalized_weights() < 0).any()


@pytest.mark.parametrize('num_inputs', [2, 3])
def test_relu_fusion_weights_stay_non_negative_after_training(num_inputs):
    torch.manual_seed(0)
    fusion = WeightedFusion(num_inputs)
    optimizer = torch.optim.SGD(fusion.parameters(), lr=50.0)
    # Input 0 is the only useful one: minimising the loss pushes the other
    # raw weights down, far below zero with this learning rate.
    target = torch.randn(1, 4, 6, 6)
    inputs = [target] + [-5 * target] * (num_inputs - 1)
    for _ in range(3):
        optimizer.zero_grad()
        F.mse_loss(fusion(inputs), target).backward()
        optimizer.step()
    assert (fusion.weight.detach()[1:] < 0).all()
    weights = fusion.normalized_weights().detach()
    assert (weights >= 0).all() and weights.sum() <= 1
    assert weights[0] > 0.99
    # The blog post's swish variant goes negative under the same training.
    swish = WeightedFusion(num_inputs, weight_act='swish')
    optimizer = torch.optim.SGD(swish.parameters(), lr=50.0)
    optimizer.zero_grad()
    F.mse_loss(swish(inputs), target).backward()
    optimizer.step()
    assert (swish.normalized_weights() < 0).any()


def test_fusion_bad_arguments():
    with pytest.raises(ValueError, match='weight_act'):
        WeightedFusion(2, weight_act='softmax')
    with pytest.raises(ValueError, match='2 inputs got 3'):
        WeightedFusion(2)([torch.zeros(1, 1, 2, 2)] * 3)
    with pytest.raises(ValueError, match='share one shape'):
        WeightedFusion(2)([torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 2)])


# --------------------------------------------------------------------------
# BiFPN encoder


def test_blog_post_topology_and_parameter_count():
    # The blog post's head layers 1-21 (everything but the RT-DETR decoder)
    # on a MobileNetV4-ConvSmall: 13,053,196 parameters.
    neck = BiFPNHybridEncoder(in_channels=[32, 64, 96, 1280])
    blog_layers = [328192, 789760, 66048, 16896, 25088, 66048, 2, 2101248, 2,
                   2101248, 74240, 3, 2101248, 590336, 3, 2101248, 590336, 2,
                   2101248]
    assert num_params(neck) == sum(blog_layers) == 13_053_196
    assert [f.num_inputs for f in neck.td_fusions] == [2, 2]
    assert [f.num_inputs for f in neck.bu_fusions] == [3, 3, 2]
    blocks = list(neck.td_blocks) + list(neck.bu_blocks)
    assert len(blocks) == 5 and all(
        isinstance(b, CSPRepLayer) and num_params(b) == 2101248
        for b in blocks)
    assert neck.extra_down.conv.stride == (2, 2)
    assert neck.extra_down.conv.in_channels == 32


def test_every_input_reaches_every_output():
    neck = BiFPNHybridEncoder(**TINY)
    for i in range(3):
        feats = pyramid(45, 70, requires_grad=True)
        neck(feats)[i].sum().backward()
        # P2 enters through the bottom-up path, P5 through AIFI and the
        # top-down path; both reach all three outputs.
        assert all(f.grad is not None and f.grad.abs().sum() > 0
                   for f in feats), i


def test_three_level_input_and_registry_build():
    neck = MODELS.build(dict(type='BiFPNHybridEncoder',
                             in_channels=[8, 12, 24],
                             hidden_dim=16, num_heads=2, ffn_dim=32,
                             depth_mult=1 / 3, weight_act='swish',
                             num_encoder_layers=0, feat_strides=(8, 16, 32),
                             upsample_cfg=dict(type='bilinear',
                                               scale_factor=2)))
    assert neck.encoder is None
    assert len(neck.bu_blocks[0].bottlenecks) == 1
    assert [f.weight_act for f in neck.bu_fusions] == ['swish', 'swish']
    feats = [torch.randn(1, c, -(-33 // s), -(-50 // s))
             for c, s in zip((8, 12, 24), (8, 16, 32))]
    outs = neck(feats)
    assert [tuple(o.shape) for o in outs] == [(1, 16, 3, 4), (1, 16, 2, 2)]


def test_neck_bad_arguments():
    with pytest.raises(ValueError, match='at least 3'):
        BiFPNHybridEncoder(in_channels=[8, 16])
    neck = BiFPNHybridEncoder(**TINY)
    with pytest.raises(ValueError, match='expects 4'):
        neck(pyramid(32, 32)[1:])


# --------------------------------------------------------------------------
# The blog post's detector


def test_blog_post_detector_parameter_count():
    # The blog post prints "rtdetr-MobileNetv4-BiFPN summary: 19,463,904
    # parameters" (nc=1).
    model = build_detector_from_config(
        'rtdetr_mnv4_conv_s_bifpn', small=False,
        **{'model.bbox_head.num_classes': 1})
    assert num_params(model) == 19_463_904
    assert num_params(model.backbone) == 2_493_024
    assert num_params(model.neck) == 13_053_196


def test_blog_post_detector_loss_and_predict():
    torch.manual_seed(0)
    model = build_detector_from_config('rtdetr_mnv4_conv_s_bifpn')
    losses, results = run_loss_and_predict(model, sizes=((97, 131), (80, 64)))
    assert {'loss_cls', 'loss_bbox', 'loss_iou', 'dn_loss_cls'} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    fusion_grads = [f.weight.grad for f in model.neck.bu_fusions]
    assert all(g is not None and torch.isfinite(g).all() for g in fusion_grads)
    assert model.backbone.stem.conv.weight.grad.abs().sum() > 0
    for result, (h, w) in zip(results, ((97, 131), (80, 64))):
        bboxes = result.pred_instances.bboxes
        assert bboxes.shape == (30, 4)
        assert (bboxes[:, 0::2] <= w + 1e-3).all()
        assert (bboxes[:, 1::2] <= h + 1e-3).all()
