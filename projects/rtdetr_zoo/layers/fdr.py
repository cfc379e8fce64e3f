"""D-FINE's fine-grained distribution refinement (FDR): boxes as four
per-edge probability distributions over non-uniform bins.

D-FINE (Peng et al., "D-FINE: Redefine Regression Task of DETRs as
Fine-grained Distribution Refinement", ICLR 2025, Sec. 3.1) predicts, for
each edge of a box (left, top, right, bottom), the logits of a distribution
over ``reg_max + 1`` bins. The bin values are the weighting function W(n)
(Eq. 4): fine near the reference edge, coarse far from it. The expected
value of W under the distribution is the edge's offset from the reference
box, in units of the reference box's size divided by ``reg_scale``. Official
code: ``engine/deim/dfine_utils.py`` and ``Integral``, ``LQE``, ``Gate`` in
``engine/deim/dfine_decoder.py`` (ShihuaHuang95/DEIM; the same as
Peterande/D-FINE's ``src/zoo/dfine/``).
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .mlp import ActivatedMLP


def weighting_function(reg_max: int, up: Tensor, reg_scale: Tensor) -> Tensor:
    """The bin values W(n), n = 0..reg_max (D-FINE Eq. 4).

    With ``a = |up| * |reg_scale|`` and ``step = (a + 1) ** (2 / (reg_max -
    2))``: ``W = [-2a, -(step^k - 1) for k = reg_max/2 - 1 .. 1, 0,
    step^k - 1 for k = 1 .. reg_max/2 - 1, 2a]``, increasing and
    antisymmetric about the middle bin, whose value is 0.

    Args:
        reg_max (int): The number of bins minus one (even; D-FINE: 32).
        up (Tensor): (1, ): the bound parameter (D-FINE: 0.5, frozen).
        reg_scale (Tensor): (1, ): the curvature (D-FINE: 4, frozen).

    Returns:
        Tensor: (reg_max + 1, ) in ``up``'s dtype and device.
    """
    if reg_max < 4 or reg_max % 2:
        raise ValueError(f'reg_max must be an even number >= 4, got '
                         f'{reg_max}')
    bound = up.abs()[0] * reg_scale.abs()[0]
    step = (bound + 1)**(2 / (reg_max - 2))
    powers = torch.arange(1, reg_max // 2, dtype=up.dtype, device=up.device)
    right = step**powers - 1
    zero = up.new_zeros(1)
    return torch.cat([(-2 * bound)[None], -right.flip(0), zero, right,
                      (2 * bound)[None]])


def edge_probabilities(corner_logits: Tensor, num_bins: int) -> Tensor:
    """(..., 4 * num_bins) corner logits -> (..., 4, num_bins): per edge
    (l, t, r, b) the softmax over its bins."""
    return F.softmax(
        corner_logits.reshape(*corner_logits.shape[:-1], 4, num_bins), dim=-1)


def distribution_integral(corner_logits: Tensor, project: Tensor) -> Tensor:
    """Expected edge offsets ``sum_n softmax(logits)_n W(n)`` (D-FINE's
    ``Integral``).

    Args:
        corner_logits (Tensor): (..., 4 * (reg_max + 1)): per edge (l, t,
            r, b) the logits of its distribution.
        project (Tensor): (reg_max + 1, ): :func:`weighting_function`.

    Returns:
        Tensor: (..., 4) the offsets of the four edges.
    """
    probs = edge_probabilities(corner_logits, project.numel())
    return probs @ project.to(probs.dtype)


def distance_to_box(reference: Tensor, distance: Tensor,
                    reg_scale: Tensor) -> Tensor:
    """Boxes from a reference box and the four edge offsets (D-FINE's
    ``distance2bbox``).

    Each edge lies ``(0.5 * reg_scale + d) * size / reg_scale`` from the
    reference centre: at ``d = 0`` on the reference edge.

    Args:
        reference (Tensor): (..., 4) reference boxes (cx, cy, w, h).
        distance (Tensor): (..., 4) offsets (l, t, r, b).
        reg_scale (Tensor | float): the curvature (D-FINE: 4).

    Returns:
        Tensor: (..., 4) boxes (cx, cy, w, h).
    """
    reg_scale = abs(reg_scale)
    centre, size = reference[..., :2], reference[..., 2:]
    unit = size / reg_scale
    top_left = centre - (0.5 * reg_scale + distance[..., :2]) * unit
    bottom_right = centre + (0.5 * reg_scale + distance[..., 2:]) * unit
    return torch.cat([(top_left + bottom_right) / 2,
                      bottom_right - top_left], dim=-1)


def box_to_distance(reference: Tensor, boxes: Tensor, reg_max: int,
                    reg_scale: Tensor, up: Tensor,
                    eps: float = 0.1) -> Tuple[Tensor, Tensor, Tensor]:
    """The fine-grained localisation targets of ground-truth boxes (D-FINE's
    ``bbox2distance`` with ``translate_gt``).

    Each edge's offset (the inverse of :func:`distance_to_box`) falls
    between two neighbouring bins of W: the target is the left bin's index
    (as a float), and the two bins get the weights of linear
    interpolation. Offsets below W(0) go wholly to bin 0, above W(reg_max)
    wholly to bin ``reg_max - 0.1``; the index is clamped to ``[0, reg_max -
    eps]``.

    Args:
        reference (Tensor): (N, 4) reference boxes (cx, cy, w, h).
        boxes (Tensor): (N, 4) target boxes (x1, y1, x2, y2).
        reg_max (int), reg_scale (Tensor), up (Tensor): as
            :func:`weighting_function`.
        eps (float): Keeps the index below ``reg_max``. Defaults to 0.1.

    Returns:
        tuple[Tensor, Tensor, Tensor]: (4N, ) each, edges in the order (l,
        t, r, b) of each box: the left-bin index, the weight of
        the right bin and the weight of the left bin (all detached).
    """
    reg_scale_abs = reg_scale.abs()
    unit = reference[:, 2:] / reg_scale_abs + 1e-16
    half = 0.5 * reg_scale_abs
    left_top = (reference[:, :2] - boxes[:, :2]) / unit - half
    right_bottom = (boxes[:, 2:] - reference[:, :2]) / unit - half
    offsets = torch.cat([left_top, right_bottom], dim=-1).reshape(-1)
    project = weighting_function(reg_max, up, reg_scale)
    index = ((project[None] - offsets[:, None]) <= 0).sum(dim=1) - 1
    index = index.to(offsets.dtype)
    weight_right = torch.zeros_like(offsets)
    weight_left = torch.zeros_like(offsets)
    inside = (index >= 0) & (index < reg_max)
    left = index[inside].long()
    to_left = (offsets[inside] - project[left]).abs()
    to_right = (project[left + 1] - offsets[inside]).abs()
    weight_right[inside] = to_left / (to_left + to_right)
    weight_left[inside] = 1.0 - weight_right[inside]
    below, above = index < 0, index >= reg_max
    weight_left[below] = 1.0
    index[below] = 0.0
    weight_right[above] = 1.0
    index[above] = reg_max - 0.1
    index = index.clamp(min=0, max=reg_max - eps)
    return index.detach(), weight_right.detach(), weight_left.detach()


class LocalizationQuality(nn.Module):
    """D-FINE's location-quality estimate (``LQE``): a score correction from
    the shape of the corner distributions.

    Per edge, the ``k`` largest probabilities and their mean (4 (k + 1)
    statistics) feed an MLP whose output is added to every class logit: a
    sharp distribution signals a well-localised box. The last layer starts
    at zero (no correction).

    Args:
        reg_max (int): Bins minus one of the distributions.
        k (int): Top probabilities per edge. Defaults to 4.
        hidden_dim (int): Hidden width of the MLP. Defaults to 64.
        num_layers (int): Layers of the MLP. Defaults to 2.
        act_cfg (dict): Activation of the MLP (D-FINE: ReLU; DEIM-D-FINE:
            SiLU).

    Shapes: scores (B, N, C), corner logits (B, N, 4 (reg_max + 1)) ->
    (B, N, C).
    """

    def __init__(self, reg_max: int, k: int = 4, hidden_dim: int = 64,
                 num_layers: int = 2,
                 act_cfg: dict = dict(type='ReLU')) -> None:
        super().__init__()
        self.reg_max, self.k = reg_max, k
        self.reg_conf = ActivatedMLP(4 * (k + 1), hidden_dim, 1, num_layers,
                                     act_cfg)
        nn.init.zeros_(self.reg_conf.layers[-1].weight)
        nn.init.zeros_(self.reg_conf.layers[-1].bias)

    def forward(self, scores: Tensor, corner_logits: Tensor) -> Tensor:
        """(B, N, C), (B, N, 4 (reg_max + 1)) -> (B, N, C)."""
        probs = edge_probabilities(corner_logits, self.reg_max + 1)
        top = probs.topk(self.k, dim=-1)[0]
        stats = torch.cat([top, top.mean(dim=-1, keepdim=True)], dim=-1)
        return scores + self.reg_conf(stats.flatten(-2))


class GatedFusion(nn.Module):
    """D-FINE's ``Gate`` in place of the norm after cross-attention:
    ``LayerNorm(g1 * x + g2 * y)`` with ``(g1, g2) = sigmoid(Linear([x,
    y]))``; it starts at ``g1 = g2 = 0.5`` (zero weight, bias
    logit(0.5) = 0).

    Shapes: (..., C), (..., C) -> (..., C).
    """

    def __init__(self, embed_dims: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * embed_dims, 2 * embed_dims)
        self.norm = nn.LayerNorm(embed_dims)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Both gates at 0.5: zero weight and bias."""
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, query: Tensor, attended: Tensor) -> Tensor:
        """The gated sum of the query and the cross-attention output."""
        gates = torch.sigmoid(self.gate(torch.cat([query, attended], -1)))
        gate_query, gate_attended = gates.chunk(2, dim=-1)
        return self.norm(gate_query * query + gate_attended * attended)
