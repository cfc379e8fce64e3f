"""D-FINE's fine-grained distribution refinement primitives
(``rtdetr_zoo.layers.fdr``) against the official ``dfine_utils.py`` and
``Integral`` (ShihuaHuang95/DEIM snapshot a9aa4ad, ``engine/deim/``).

The reference values below were written from a run of the official
functions in a scratch folder on the inputs that :func:`inputs` draws (the
same generator calls); our functions printed the same values there.
"""
import pytest
import torch

from rtdetr_zoo.layers.fdr import (GatedFusion, LocalizationQuality,
                                   box_to_distance, distance_to_box,
                                   distribution_integral, weighting_function)

UP, REG_SCALE, REG_MAX = torch.tensor([0.5]), torch.tensor([4.]), 32

# weighting_function(32, up=0.5, reg_scale=4), official, 6 decimals.
OFFICIAL_W = [
    -4.0, -1.999999, -1.78813, -1.591224, -1.408224, -1.238148, -1.080083,
    -0.933182, -0.796655, -0.66977, -0.551845, -0.442249, -0.340393,
    -0.245731, -0.157754, -0.07599, 0.0, 0.07599, 0.157754, 0.245731,
    0.340393, 0.442249, 0.551845, 0.66977, 0.796655, 0.933182, 1.080083,
    1.238148, 1.408224, 1.591224, 1.78813, 1.999999, 4.0]
# bbox2distance(reference, boxes, 32, reg_scale, up): index, weight_right.
OFFICIAL_INDEX = [
    31.9, 31.9, 7.0, 31.0, 0.0, 31.0, 31.9, 23.0, 28.0, 27.0, 6.0, 0.0,
    31.9, 0.0, 13.0, 8.0, 28.0, 29.0, 0.0, 0.0, 31.9, 31.0, 18.0, 0.0]
OFFICIAL_WEIGHT_RIGHT = [
    1.0, 1.0, 0.04368, 0.4787, 0.0, 0.60492, 1.0, 0.47451, 0.15791,
    0.20008, 0.4508, 0.31913, 1.0, 0.87135, 0.55879, 0.21715, 0.68333,
    0.546, 0.0, 0.0, 1.0, 0.86304, 0.71277, 0.82453]
# Integral(32)(logits, W): the first 8 offsets and the sum; distance2bbox
# of the first five references: the first 8 values and the sum.
OFFICIAL_INTEGRAL = ([-0.1276, -0.33103, -0.1359, -0.34931, -0.22244,
                      -0.16163, -0.00394, -0.07115], -2.37738)
OFFICIAL_BOXES = ([0.49619, 0.76791, 0.05713, 0.11156, 0.09386, 0.13553,
                   0.1858, 0.29126], 15.0962)


def inputs():
    """Six reference boxes (cx, cy, w, h), six targets (x1, y1, x2, y2)
    and (2, 5, 132) corner logits, as drawn in the scratch run."""
    gen = torch.Generator().manual_seed(0)
    reference = torch.cat([torch.rand(6, 2, generator=gen),
                           torch.rand(6, 2, generator=gen) * 0.5 + 0.05], 1)
    centre = torch.rand(6, 2, generator=gen)
    size = torch.rand(6, 2, generator=gen) * 0.8 + 0.02
    boxes = torch.cat([centre - size / 2, centre + size / 2], 1)
    logits = torch.randn(2, 5, 132, generator=gen)
    return reference, boxes, logits


def test_weighting_function_is_the_official_one():
    project = weighting_function(REG_MAX, UP, REG_SCALE)
    torch.testing.assert_close(project, torch.tensor(OFFICIAL_W),
                               atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match='even number'):
        weighting_function(7, UP, REG_SCALE)


def test_box_to_distance_is_the_official_target():
    reference, boxes, _ = inputs()
    index, weight_right, weight_left = box_to_distance(
        reference, boxes, REG_MAX, REG_SCALE, UP)
    torch.testing.assert_close(index, torch.tensor(OFFICIAL_INDEX),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(weight_right,
                               torch.tensor(OFFICIAL_WEIGHT_RIGHT),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(weight_left + weight_right,
                               torch.ones_like(weight_left))


def test_integral_and_decoding_are_the_official_ones():
    reference, _, logits = inputs()
    project = weighting_function(REG_MAX, UP, REG_SCALE)
    offsets = distribution_integral(logits, project)
    assert offsets.shape == (2, 5, 4)
    first, total = OFFICIAL_INTEGRAL
    torch.testing.assert_close(offsets.flatten()[:8], torch.tensor(first),
                               atol=1e-5, rtol=0)
    assert offsets.sum().item() == pytest.approx(total, abs=1e-4)
    boxes = distance_to_box(reference[:5].expand(2, 5, 4), offsets,
                            REG_SCALE)
    first, total = OFFICIAL_BOXES
    torch.testing.assert_close(boxes.flatten()[:8], torch.tensor(first),
                               atol=1e-5, rtol=0)
    assert boxes.sum().item() == pytest.approx(total, abs=1e-4)


def test_targets_decode_back_to_the_boxes_inside_the_range():
    """The interpolation weights put on W give an edge's offset back, so
    decoding the target distributions of boxes whose edges lie within
    W's range returns the boxes."""
    reference = torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1]])
    boxes = torch.tensor([[0.38, 0.33, 0.61, 0.68],
                          [0.24, 0.54, 0.37, 0.67]])
    index, weight_right, weight_left = box_to_distance(
        reference, boxes, REG_MAX, REG_SCALE, UP)
    project = weighting_function(REG_MAX, UP, REG_SCALE)
    left = index.long()
    offsets = (weight_left * project[left] +
               weight_right * project[left + 1]).reshape(2, 4)
    decoded = distance_to_box(reference, offsets, REG_SCALE)
    xyxy = torch.cat([decoded[:, :2] - decoded[:, 2:] / 2,
                      decoded[:, :2] + decoded[:, 2:] / 2], 1)
    torch.testing.assert_close(xyxy, boxes, atol=1e-5, rtol=0)


def test_quality_estimate_and_gate_start_neutral():
    """The LQE adds nothing and the gate averages its inputs before
    training (both zero-initialised as in the official code); a trained
    LQE adds the same correction to every class of a query."""
    lqe = LocalizationQuality(REG_MAX)
    scores, corners = torch.randn(2, 5, 3), torch.randn(2, 5, 132)
    torch.testing.assert_close(lqe(scores, corners), scores)
    torch.nn.init.normal_(lqe.reg_conf.layers[-1].weight)
    shift = lqe(scores, corners) - scores
    assert shift.abs().max() > 0
    torch.testing.assert_close(shift, shift[..., :1].expand_as(shift))
    gate = GatedFusion(8)
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    torch.testing.assert_close(gate(x, y), gate.norm(0.5 * x + 0.5 * y))
