"""IoU-aware classification losses: RT-DETR's varifocal loss and DEIM's
matchability-aware loss."""
from abc import abstractmethod
from typing import Optional

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor

from .matched_predictions import AvgFactors, MatchedLoss, MatchedPredictions


def class_onehot(labels: Tensor, num_classes: int,
                 dtype: torch.dtype) -> Tensor:
    """(N,) labels in [0, C], C meaning background -> (N, C) one-hot, the
    background all zeros. A comparison, not ``F.one_hot``, which reads the
    labels' min and max on the host."""
    return (labels[:, None] == torch.arange(
        num_classes, device=labels.device)).to(dtype)


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
    onehot = class_onehot(labels, logits.size(-1), logits.dtype)
    target_score = onehot * scores.to(logits.dtype)[:, None]
    pred_score = logits.sigmoid().detach()
    focal_weight = (alpha * pred_score.pow(gamma) * (1 - onehot) +
                    target_score)
    return F.binary_cross_entropy_with_logits(
        logits, target_score, reduction='none') * focal_weight


def matchability_aware_loss(logits: Tensor, labels: Tensor, scores: Tensor,
                            gamma: float = 1.5,
                            alpha: Optional[float] = None) -> Tensor:
    """Element-wise matchability-aware loss (MAL) of DEIM (Huang et al.,
    CVPR 2025, Eq. 4; the official ``DEIMCriterion.loss_labels_mal``,
    ``engine/deim/deim_criterion.py``):

    ``BCE(logit, t) * (a * sigmoid(logit)^gamma * (1 - onehot) + onehot)``

    with ``t = onehot * score^gamma`` and ``a = alpha`` (1 when None, the
    official ``mal_alpha: None``). Unlike the varifocal loss a positive
    is weighted 1 whatever its IoU, so a low-IoU match is still learned.

    Args:
        logits (Tensor): (N, C).
        labels (Tensor): (N,) in [0, C], C meaning background.
        scores (Tensor): (N,) target score (the IoU) of the labelled class.
        gamma (float): Exponent of the target and of the negatives' weight.
        alpha (float, optional): Weight of the negatives.

    Returns:
        Tensor: (N, C).
    """
    onehot = class_onehot(labels, logits.size(-1), logits.dtype)
    target_score = onehot * scores.to(logits.dtype)[:, None].pow(gamma)
    negative_weight = logits.sigmoid().detach().pow(gamma)
    if alpha is not None:
        negative_weight = alpha * negative_weight
    weight = negative_weight * (1 - onehot) + onehot
    return F.binary_cross_entropy_with_logits(
        logits, target_score, reduction='none') * weight


class IoUAwareClassificationLoss(MatchedLoss):
    """Base of the classification losses whose target for a matched query's
    class is the IoU of its box with its ground truth (detached): the
    element-wise loss of every query of every layer, summed and divided by
    ``avg_factors.classification``.

    Args:
        loss_weight (float): Defaults to 1.0.
        iou_eps (float): Clamp of the IoU's union. Defaults to 1e-6
            (mmdet's ``bbox_overlaps``).
    """

    def __init__(self, loss_weight: float = 1.0,
                 iou_eps: float = 1e-6) -> None:
        super().__init__(loss_weight)
        self.iou_eps = iou_eps

    @abstractmethod
    def elementwise(self, logits: Tensor, labels: Tensor,
                    scores: Tensor) -> Tensor:
        """(N, C) logits, (N,) labels (C = background), (N,) IoU targets
        -> (N, C) loss."""

    def forward(self, matches: MatchedPredictions,
                avg_factors: AvgFactors) -> Tensor:
        iou, _ = matches.iou_giou(self.iou_eps)
        logits = matches.flat_cls_scores
        scores = logits.new_zeros(logits.shape[:2]).scatter_(
            1, matches.query_index, iou.detach())
        loss = self.elementwise(logits.flatten(0, 1),
                                matches.target_labels.flatten(),
                                scores.flatten())
        return (self.loss_weight * loss).view(matches.num_layers, -1).sum(
            1) / avg_factors.classification


@MODELS.register_module()
class RTDETRVarifocalLoss(IoUAwareClassificationLoss):
    """IoU-aware classification loss of RT-DETR (Zhao et al., CVPR 2024):
    :func:`varifocal_loss`.

    Args:
        alpha (float): Weight of the negatives. Defaults to 0.75.
        gamma (float): Focusing exponent. Defaults to 2.0.
        loss_weight (float): Defaults to 1.0.
        iou_eps (float): Clamp of the IoU's union. Defaults to 1e-6.
    """

    def __init__(self, alpha: float = 0.75, gamma: float = 2.0,
                 loss_weight: float = 1.0, iou_eps: float = 1e-6) -> None:
        super().__init__(loss_weight, iou_eps)
        self.alpha = alpha
        self.gamma = gamma

    def elementwise(self, logits: Tensor, labels: Tensor,
                    scores: Tensor) -> Tensor:
        return varifocal_loss(logits, labels, scores, self.alpha, self.gamma)


@MODELS.register_module()
class MatchabilityAwareLoss(IoUAwareClassificationLoss):
    """DEIM's matchability-aware classification loss (Huang et al., CVPR
    2025): :func:`matchability_aware_loss`. Official weights: 1 for it, 5
    and 2 for the L1 and GIoU terms (``configs/base/rt_deim.yml``).

    Args:
        gamma (float): Defaults to 1.5 (the official ``gamma``).
        alpha (float, optional): Weight of the negatives; None (the official
            ``mal_alpha``) weights them by ``sigmoid(logit)^gamma`` only.
        loss_weight (float): Defaults to 1.0.
        iou_eps (float): Clamp of the IoU's union. Defaults to 1e-6.
    """

    def __init__(self, gamma: float = 1.5, alpha: Optional[float] = None,
                 loss_weight: float = 1.0, iou_eps: float = 1e-6) -> None:
        super().__init__(loss_weight, iou_eps)
        self.gamma = gamma
        self.alpha = alpha

    def elementwise(self, logits: Tensor, labels: Tensor,
                    scores: Tensor) -> Tensor:
        return matchability_aware_loss(logits, labels, scores, self.gamma,
                                       self.alpha)
