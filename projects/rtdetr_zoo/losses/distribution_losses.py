"""D-FINE's losses of the per-edge distributions (Peng et al., ICLR 2025,
Sec. 3.1 and 3.2; official ``loss_local`` and
``unimodal_distribution_focal_loss`` of ``DEIMCriterion``,
``engine/deim/deim_criterion.py`` of ShihuaHuang95/DEIM)."""
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor

from .matched_predictions import AvgFactors, MatchedLoss, MatchedPredictions


@MODELS.register_module()
class FineGrainedLocalizationLoss(MatchedLoss):
    """FGL: each matched edge's distribution against its target offset,
    which lies between two bins: the cross-entropy with each of the two
    bins, weighted by linear interpolation, times the IoU of the layer's
    box with its ground truth (detached), summed and divided by
    ``avg_factors.boxes`` (D-FINE Eq. 5).

    Args:
        loss_weight (float): Defaults to 0.15 (D-FINE).

    Shapes: per layer of ``matches`` (L stacked), the corners
    ``matches.matched_corners`` (L, M, 4, reg_max + 1) -> (L,).
    """

    localization = True
    needs_distributions = True

    def __init__(self, loss_weight: float = 0.15) -> None:
        super().__init__(loss_weight)

    def forward(self, matches: MatchedPredictions,
                avg_factors: AvgFactors) -> Tensor:
        log_probs = matches.matched_corners.log_softmax(-1)
        left_bin, weight_right, weight_left = matches.localization_targets
        left_bin = left_bin.long()[..., None]
        cross_entropy_left = -log_probs.gather(-1, left_bin)[..., 0]
        cross_entropy_right = -log_probs.gather(-1, left_bin + 1)[..., 0]
        iou, _ = matches.iou_giou()
        loss = (cross_entropy_left * weight_left +
                cross_entropy_right * weight_right) * iou.detach()[..., None]
        return self.loss_weight * loss.sum((1, 2)) / avg_factors.boxes


@MODELS.register_module()
class DecoupledDistillationFocalLoss(MatchedLoss):
    """DDF: the last layer's distributions distilled into the earlier
    layers' (GO-LSD, D-FINE Eq. 6).

    For every query edge of layer ``l < L - 1``, ``T^2 KL(softmax(t / T) ||
    softmax(s / T))`` between the last layer's (teacher, detached) and the
    layer's logits, weighted by the layer's IoU with its ground truth at a
    matched query and by the teacher's highest class probability elsewhere
    (detached). The matched and the unmatched edges are averaged apart and
    combined with the weights ``avg_factors.distillation`` (the official
    ``sqrt(edges x 8 / batch size)`` of the matching part). The last layer
    has no term.

    Args:
        loss_weight (float): Defaults to 1.5 (D-FINE).
        temperature (float): T. Defaults to 5.

    Shapes: ``matches.distributions.corners`` (L, B, Q, 4 (reg_max + 1))
    -> (L,), the last entry 0.
    """

    localization = True
    needs_distributions = True
    teacher_last_layer = True

    def __init__(self, loss_weight: float = 1.5,
                 temperature: float = 5.0) -> None:
        super().__init__(loss_weight)
        self.temperature = temperature

    def forward(self, matches: MatchedPredictions,
                avg_factors: AvgFactors) -> Tensor:
        corners = matches.distributions.corners.flatten(1, 2).unflatten(
            -1, (4, -1))
        num_students, num_queries = corners.size(0) - 1, corners.size(1)
        if num_students == 0:
            return corners.new_zeros(1)
        temperature = self.temperature
        # (L - 1, B * Q, 4)
        divergence = F.kl_div(
            F.log_softmax(corners[:-1] / temperature, dim=-1),
            F.softmax(corners[-1:].detach() / temperature, dim=-1),
            reduction='none').sum(-1) * temperature**2
        confidence = matches.flat_cls_scores[-1].detach().sigmoid().max(-1)[0]
        iou, _ = matches.iou_giou()
        student_index = matches.query_index[:-1]
        weight = confidence.expand(num_students, -1).scatter(
            1, student_index, iou[:-1].detach().to(confidence.dtype))
        matched = torch.zeros_like(weight).scatter_(1, student_index, 1.0)
        loss = (weight[..., None] * divergence).sum(-1)
        num_matched = student_index.size(1)
        matched_mean = (loss * matched).sum(1) / max(4 * num_matched, 1)
        num_unmatched = num_queries - num_matched
        unmatched_mean = (loss * (1 - matched)).sum(1) / max(
            4 * num_unmatched, 1)
        weight_matched, weight_unmatched = avg_factors.distillation
        combined = (matched_mean * weight_matched +
                    unmatched_mean * weight_unmatched) / (
                        weight_matched + weight_unmatched)
        return self.loss_weight * torch.cat(
            [combined, combined.new_zeros(1)])
