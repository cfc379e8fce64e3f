"""RT-DETRv2's deformable cross-attention (MultiScaleDeformableAttentionV2):
RT-DETR's attention when every level has the same points, points per level,
discrete sampling (right pixel on non-square maps, no grid_sample, frozen
offsets), bf16 autocast, loading, errors and the decoder's choice of
attention by config (CUDA against the CPU: tests/test_device.py). The
official numbers are checked on the official weights by
test_rtdetrv2_equivalence.py."""
import pytest
import torch
import torch.nn.functional as F
from mmcv.ops import MultiScaleDeformableAttention

from rtdetr_zoo.layers import (CPUFastMultiScaleDeformableAttention,
                               MultiScaleDeformableAttentionV2,
                               RTDETRTransformerDecoder)

from .utils import assert_same_attention

SHAPES = torch.tensor([[10, 12], [5, 6], [3, 3]])


def _inputs(batch=2, num_query=7, dims=32, levels=3):
    gen = torch.Generator().manual_seed(0)
    shapes = SHAPES[:levels]
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    query = torch.randn(batch, num_query, dims, generator=gen)
    value = torch.randn(batch, int(shapes.prod(1).sum()), dims, generator=gen)
    boxes = torch.rand(batch, num_query, levels, 4, generator=gen) * 0.6 + 0.2
    return dict(query=query, value=value, reference_points=boxes,
                spatial_shapes=shapes, level_start_index=starts)


def _randomised(attn):
    torch.manual_seed(0)
    for name, param in attn.named_parameters():
        param.data.normal_(0, 0.1)
        if name == 'sampling_offsets.bias':
            param.data.normal_(0, 2.0)
    return attn


def _reference(attn, query, value, reference_points, spatial_shapes,
               **kwargs):
    """RT-DETRv2's attention written point by point (paper Sec. 3): point k
    of level l samples at ``ref_xy + offset / n_l * ref_wh * offset_scale``,
    bilinearly or at the pixel ``floor(x * W + 0.5)``, ``floor(y * H +
    0.5)`` clamped to the map."""
    batch, num_query, dims = query.shape
    heads = attn.num_heads
    values = attn.value_proj(value).view(batch, -1, heads, dims // heads)
    offsets = attn.sampling_offsets(query).view(batch, num_query, heads, -1,
                                                2)
    weights = attn.attention_weights(query).view(
        batch, num_query, heads, -1).softmax(-1)
    output = torch.zeros(batch, num_query, heads, dims // heads)
    point, start = 0, 0
    for level, (height, width) in enumerate(spatial_shapes.tolist()):
        # (B, heads, d, H, W)
        level_value = values[:, start:start + height * width].unflatten(
            1, (height, width)).permute(0, 3, 4, 1, 2)
        start += height * width
        ref = reference_points[:, :, level, None]  # (B, Q, 1, 4)
        for _ in range(attn.num_points[level]):
            loc = ref[..., :2] + offsets[:, :, :, point] / \
                attn.num_points[level] * ref[..., 2:] * attn.offset_scale
            for b in range(batch):
                for h in range(heads):
                    if attn.method == 'default':
                        grid = (2 * loc[b, :, h] - 1)[None, :, None]
                        sampled = F.grid_sample(
                            level_value[b, h][None], grid,
                            align_corners=False)[0, :, :, 0].T
                    else:
                        x = (loc[b, :, h, 0] * width + 0.5).floor().clamp(
                            0, width - 1).long()
                        y = (loc[b, :, h, 1] * height + 0.5).floor().clamp(
                            0, height - 1).long()
                        sampled = level_value[b, h][:, y, x].T
                    output[b, :, h] += sampled * \
                        weights[b, :, h, point, None]
            point += 1
    return attn.output_proj(output.flatten(2)) + query


def test_equal_points_per_level_is_rtdetr_attention():
    """4 points on every level, bilinear: the parameters and the function of
    RT-DETR's attention (mmcv's), plus the ``num_points_scale`` buffer."""
    ours = _randomised(MultiScaleDeformableAttentionV2(
        32, num_heads=4, num_levels=3, num_points=4, dropout=0.0))
    reference = MultiScaleDeformableAttention(
        32, num_heads=4, num_levels=3, num_points=4, dropout=0.0,
        batch_first=True)
    state = ours.state_dict()
    torch.testing.assert_close(state.pop('num_points_scale'),
                               torch.full((12, ), 0.25))
    reference.load_state_dict(state)
    assert_same_attention(ours, reference, _inputs)
    inputs = _inputs()
    mask = torch.zeros(inputs['value'].shape[:2], dtype=torch.bool)
    mask[:, -5:] = True
    torch.testing.assert_close(ours(key_padding_mask=mask, **inputs),
                               reference(key_padding_mask=mask, **inputs),
                               atol=1e-5, rtol=1e-5)


def test_points_per_level_layout_and_initialisation():
    attn = MultiScaleDeformableAttentionV2(
        32, num_heads=4, num_levels=3, num_points=[3, 6, 3])
    assert attn.num_points == [3, 6, 3]
    assert attn.sampling_offsets.out_features == 4 * 12 * 2
    assert attn.attention_weights.out_features == 4 * 12
    torch.testing.assert_close(
        attn.num_points_scale,
        torch.tensor([1 / 3] * 3 + [1 / 6] * 6 + [1 / 3] * 3))
    # Offsets start along each head's direction, k times for the k-th
    # point of a level: head 0 points along +x, head 1 along +y.
    bias = attn.sampling_offsets.bias.view(4, 12, 2)
    steps = torch.tensor([1., 2, 3, 1, 2, 3, 4, 5, 6, 1, 2, 3])
    torch.testing.assert_close(bias[0], torch.stack(
        [steps, torch.zeros(12)], -1))
    torch.testing.assert_close(bias[1], torch.stack(
        [torch.zeros(12), steps], -1), atol=1e-6, rtol=0)
    assert (attn.sampling_offsets.weight == 0).all()
    assert (attn.attention_weights.weight == 0).all()


@pytest.mark.parametrize('method', ['default', 'discrete'])
@pytest.mark.parametrize('num_points', [[3, 6, 3], [4, 4, 4], [1, 2, 1]])
def test_matches_the_pointwise_formula(method, num_points):
    attn = _randomised(MultiScaleDeformableAttentionV2(
        32, num_heads=4, num_levels=3, num_points=num_points,
        method=method, dropout=0.0)).eval()
    # Batch 1 too: its per-level sampling locations are strided views.
    for batch in (1, 2):
        inputs = _inputs(batch=batch)
        with torch.no_grad():
            torch.testing.assert_close(attn(**inputs),
                                       _reference(attn, **inputs),
                                       atol=1e-5, rtol=1e-5)


def _one_pixel_reader(height, width):
    """A discrete attention with one head, one level and one point at the
    reference centre, whose output channel 0 is the flat index (y * W + x)
    of the pixel it read."""
    attn = MultiScaleDeformableAttentionV2(
        4, num_heads=1, num_levels=1, num_points=1, method='discrete',
        dropout=0.0)
    with torch.no_grad():
        for linear in (attn.value_proj, attn.output_proj):
            linear.weight.copy_(torch.eye(4))
            linear.bias.zero_()
        attn.sampling_offsets.bias.zero_()
    value = torch.zeros(1, height * width, 4)
    value[0, :, 0] = torch.arange(height * width, dtype=torch.float32)

    def read(cx, cy):
        out = attn(torch.zeros(1, 1, 4), value=value,
                   reference_points=torch.tensor([[[[cx, cy, 0.1, 0.1]]]]),
                   spatial_shapes=torch.tensor([[height, width]]),
                   level_start_index=torch.tensor([0]))
        return int(out[0, 0, 0].round())

    return read


def _official_index(cx, cy, height, width):
    """The pixel (x, y) the official discrete sampling reads: both indices
    clamped to ``h - 1``."""
    x = int(min(max(int(cx * width + 0.5), 0), height - 1))
    y = int(min(max(int(cy * height + 0.5), 0), height - 1))
    return x, y


@torch.no_grad()
def test_discrete_reads_the_right_pixel_on_non_square_maps():
    # Wide map (H 2, W 5), a point near the right border: the nearest
    # pixel is column 4 (x * W + 0.5 = 5.25, clamped to W - 1).
    read = _one_pixel_reader(2, 5)
    assert read(0.95, 0.3) == 1 * 5 + 4
    x, y = _official_index(0.95, 0.3, 2, 5)
    assert (x, y) == (1, 1)  # the official formula reads column 1
    assert y * 5 + x != read(0.95, 0.3)
    # Tall map (H 5, W 2): column 1 (1.9 + 0.5 -> 2, clamped to W - 1); the
    # official formula asks for column 2 of a 2-column map.
    read = _one_pixel_reader(5, 2)
    assert read(0.95, 0.5) == 3 * 2 + 1
    assert _official_index(0.95, 0.5, 5, 2) == (2, 3)
    # On a square map both clamp alike.
    read = _one_pixel_reader(4, 4)
    for cx, cy in [(0.95, 0.05), (0.3, 0.99), (-0.2, 1.3)]:
        x, y = _official_index(cx, cy, 4, 4)
        assert read(cx, cy) == y * 4 + x


def test_discrete_uses_no_grid_sample_and_freezes_the_offsets(monkeypatch):
    attn = _randomised(MultiScaleDeformableAttentionV2(
        32, num_heads=4, num_levels=3, num_points=[3, 6, 3],
        method='discrete', dropout=0.0))
    assert not attn.sampling_offsets.weight.requires_grad
    assert not attn.sampling_offsets.bias.requires_grad

    def no_grid_sample(*args, **kwargs):
        raise AssertionError('grid_sample called by the discrete method')

    monkeypatch.setattr(F, 'grid_sample', no_grid_sample)
    inputs = _inputs()
    inputs['value'].requires_grad_(True)
    attn(**inputs).square().sum().backward()
    assert inputs['value'].grad.abs().sum() > 0
    for module in (attn.attention_weights, attn.value_proj,
                   attn.output_proj):
        assert module.weight.grad.abs().sum() > 0
    assert attn.sampling_offsets.weight.grad is None
    # The default method does need grid_sample (so the patch above bites).
    attn.method = 'default'
    with pytest.raises(AssertionError, match='grid_sample'):
        attn(**inputs)


@pytest.mark.parametrize('method', ['default', 'discrete'])
def test_bf16_autocast(method):
    """Under bf16 autocast the sampling runs in bf16, the locations in
    float32; the result stays close to float32."""
    attn = _randomised(MultiScaleDeformableAttentionV2(
        32, num_heads=4, num_levels=3, num_points=[3, 6, 3],
        method=method, dropout=0.0)).eval()
    inputs = _inputs()
    with torch.no_grad():
        expected = attn(**inputs)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            locations = attn.sampling_locations(
                inputs['query'], inputs['reference_points'])
            got = attn(**inputs)
    assert locations.dtype == torch.float32
    assert torch.isfinite(got).all()
    scale = expected.abs().max()
    assert (got.float() - expected).abs().max() < 0.05 * scale


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match='batch_first=True'):
        MultiScaleDeformableAttentionV2(32, num_heads=4, batch_first=False)
    with pytest.raises(ValueError, match='one positive count per level'):
        MultiScaleDeformableAttentionV2(32, num_heads=4, num_levels=3,
                                        num_points=[4, 4])
    with pytest.raises(ValueError, match="'default', 'discrete'"):
        MultiScaleDeformableAttentionV2(32, num_heads=4, method='nearest')
    attn = MultiScaleDeformableAttentionV2(32, num_heads=4, num_levels=3)
    inputs = _inputs()
    inputs['reference_points'] = inputs['reference_points'][..., :2]
    with pytest.raises(ValueError, match='reference boxes'):
        attn(**inputs)


def test_loading_checks_the_points_per_level():
    source = MultiScaleDeformableAttentionV2(
        32, num_heads=4, num_levels=3, num_points=[3, 6, 3])
    same = MultiScaleDeformableAttentionV2(
        32, num_heads=4, num_levels=3, num_points=[3, 6, 3],
        method='discrete')
    same.load_state_dict(source.state_dict())
    other = MultiScaleDeformableAttentionV2(
        32, num_heads=4, num_levels=3, num_points=[4, 4, 4])
    with pytest.raises(ValueError, match=r'num_points=\[3, 6, 3\]'):
        other.load_state_dict(source.state_dict())


LAYER_CFG = dict(
    self_attn_cfg=dict(embed_dims=32, num_heads=4, dropout=0.0),
    cross_attn_cfg=dict(embed_dims=32, num_levels=3, num_heads=4,
                        num_points=2, dropout=0.0, batch_first=True),
    ffn_cfg=dict(embed_dims=32, feedforward_channels=64, ffn_drop=0.0))


def test_decoder_takes_the_attention_from_its_config():
    v1 = RTDETRTransformerDecoder(num_layers=2, layer_cfg=LAYER_CFG)
    assert all(type(layer.cross_attn) is CPUFastMultiScaleDeformableAttention
               for layer in v1.layers)
    assert v1.layers[0].cross_attn.num_points == 2
    v2_cfg = dict(LAYER_CFG, cross_attn_cfg=dict(
        LAYER_CFG['cross_attn_cfg'], type='MultiScaleDeformableAttentionV2',
        num_points=[2, 2, 2], method='discrete'))
    v2 = RTDETRTransformerDecoder(num_layers=2, layer_cfg=v2_cfg)
    for layer in v2.layers:
        assert isinstance(layer.cross_attn, MultiScaleDeformableAttentionV2)
        assert layer.cross_attn.method == 'discrete'
        assert layer.cross_attn_cfg == v2_cfg['cross_attn_cfg']
    # Same tensors as v1 plus each layer's num_points_scale buffer.
    v1_keys, v2_keys = set(v1.state_dict()), set(v2.state_dict())
    assert v2_keys - v1_keys == {
        f'layers.{i}.cross_attn.num_points_scale' for i in range(2)}
    assert v1_keys <= v2_keys
