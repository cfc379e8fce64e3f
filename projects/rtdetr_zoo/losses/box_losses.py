"""The box losses of DETR (Carion et al., ECCV 2020) on matched
predictions: L1 on normalised (cx, cy, w, h) and GIoU in pixels."""
from mmdet.registry import MODELS
from torch import Tensor

from .matched_predictions import AvgFactors, MatchedLoss, MatchedPredictions


@MODELS.register_module()
class MatchedL1Loss(MatchedLoss):
    """L1 distance of each matched box to its target, normalised (cx, cy,
    w, h), summed and divided by ``avg_factors.boxes`` (mmdet's ``L1Loss``
    as its DETR heads use it; the official RT-DETR's ``loss_boxes``).

    Args:
        loss_weight (float): Defaults to 5.0 (RT-DETR).
    """

    localization = True

    def __init__(self, loss_weight: float = 5.0) -> None:
        super().__init__(loss_weight)

    def forward(self, matches: MatchedPredictions,
                avg_factors: AvgFactors) -> Tensor:
        distance = (matches.matched_boxes - matches.target_boxes).abs()
        return self.loss_weight * distance.sum((1, 2)) / avg_factors.boxes


@MODELS.register_module()
class MatchedGIoULoss(MatchedLoss):
    """``1 - GIoU`` (Rezatofighi et al., CVPR 2019) of each matched box with
    its target in pixels, summed and divided by ``avg_factors.boxes``
    (mmdet's ``GIoULoss`` as its DETR heads use it).

    Args:
        loss_weight (float): Defaults to 2.0 (RT-DETR).
        eps (float): Clamp of the union and enclosing areas. Defaults to
            1e-6, mmdet's.
    """

    localization = True

    def __init__(self, loss_weight: float = 2.0, eps: float = 1e-6) -> None:
        super().__init__(loss_weight)
        self.eps = eps

    def forward(self, matches: MatchedPredictions,
                avg_factors: AvgFactors) -> Tensor:
        _, giou = matches.iou_giou(self.eps)
        return self.loss_weight * (1 - giou).sum(1) / avg_factors.boxes
