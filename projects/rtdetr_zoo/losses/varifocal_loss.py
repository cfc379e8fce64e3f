"""RT-DETR's IoU-aware varifocal loss."""
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor

from .matched_predictions import AvgFactors, MatchedLoss, MatchedPredictions


def varifocal_loss(logits: Tensor, labels: Tensor, scores: Tensor,
                   alpha: float = 0.75, gamma: float = 2.0) -> Tensor:
    """Element-wise varifocal loss (Zhang et al., VarifocalNet, CVPR 2021)
    as RT-DETR uses it (the official ``loss_labels_vfl``,
    ``src/zoo/rtdetr/rtdetr_criterion.py``):

    ``BCE(logit, t) * (alpha * sigmoid(logit)^gamma * (1 - onehot) + t)``

    with ``t = onehot * score``.

    Args:
        logits (Tensor): (N, C).
        labels (Tensor): (N,) in [0, C], C meaning background.
        scores (Tensor): (N,) target score (the IoU) of the labelled class.

    Returns:
        Tensor: (N, C).
    """
    # One-hot of the labels, background (C) all zeros; a comparison, not
    # F.one_hot, which reads the labels' min and max on the host.
    onehot = (labels[:, None] == torch.arange(
        logits.size(-1), device=labels.device)).to(logits.dtype)
    target_score = onehot * scores.to(logits.dtype)[:, None]
    pred_score = logits.sigmoid().detach()
    focal_weight = (alpha * pred_score.pow(gamma) * (1 - onehot) +
                    target_score)
    return F.binary_cross_entropy_with_logits(
        logits, target_score, reduction='none') * focal_weight


@MODELS.register_module()
class RTDETRVarifocalLoss(MatchedLoss):
    """IoU-aware classification loss of RT-DETR (Zhao et al., CVPR 2024):
    :func:`varifocal_loss` of every query of every layer, the target of a
    matched query's class being the IoU of its box with its ground truth
    (detached), summed and divided by ``avg_factors.classification``.

    Args:
        alpha (float): Weight of the negatives. Defaults to 0.75.
        gamma (float): Focusing exponent. Defaults to 2.0.
        loss_weight (float): Defaults to 1.0.
        iou_eps (float): Clamp of the IoU's union. Defaults to 1e-6
            (mmdet's ``bbox_overlaps``).
    """

    def __init__(self, alpha: float = 0.75, gamma: float = 2.0,
                 loss_weight: float = 1.0, iou_eps: float = 1e-6) -> None:
        super().__init__(loss_weight)
        self.alpha = alpha
        self.gamma = gamma
        self.iou_eps = iou_eps

    def forward(self, matches: MatchedPredictions,
                avg_factors: AvgFactors) -> Tensor:
        iou, _ = matches.iou_giou(self.iou_eps)
        logits = matches.flat_cls_scores
        scores = logits.new_zeros(logits.shape[:2]).scatter_(
            1, matches.query_index, iou.detach())
        loss = varifocal_loss(
            logits.flatten(0, 1), matches.target_labels.flatten(),
            scores.flatten(), self.alpha, self.gamma)
        return (self.loss_weight * loss).view(matches.num_layers, -1).sum(
            1) / avg_factors.classification
