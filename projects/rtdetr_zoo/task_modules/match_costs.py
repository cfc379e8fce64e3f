"""Match costs of every decoder layer, image and query at once.

Each cost is mmdet's (``mmdet/models/task_modules/assigners/match_cost.py``:
the same arguments, and the same operations in the same order, so a cost
equals mmdet's per-image one) plus :meth:`batched_cost`, which
:class:`~rtdetr_zoo.task_modules.BatchedHungarianMatcher` calls. A new cost
is a class registered in ``TASK_UTILS`` with a ``batched_cost`` method of
the same signature.
"""
from dataclasses import dataclass

import torch
from mmdet.models.task_modules.assigners import (BBoxL1Cost, FocalLossCost,
                                                 IoUCost)
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from torch import Tensor

from ..structures import box_iou_giou


@dataclass
class PaddedGroundTruth:
    """Each image's ground truth padded to the batch's largest count T
    (padding entries repeat the batch's first box; their costs are never
    read).

    Attributes:
        labels (Tensor): (B, T) class indices.
        boxes (Tensor): (B, T, 4) (x1, y1, x2, y2) in pixels.
        factors (Tensor): (B, 1, 4) (w, h, w, h) of each image.
    """
    labels: Tensor
    boxes: Tensor
    factors: Tensor


@TASK_UTILS.register_module()
class BatchedFocalLossCost(FocalLossCost):
    """mmdet's ``FocalLossCost`` (label input) for a whole batch."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.binary_input:
            raise ValueError(
                'BatchedFocalLossCost matches class labels; binary_input '
                '(mask) is not supported')

    def batched_cost(self, cls_scores: Tensor, pred_boxes: Tensor,
                     gt: PaddedGroundTruth) -> Tensor:
        """Weighted focal cost (L, B, Q, T) of the class logits
        ``cls_scores`` (L, B, Q, C) for each image's ground-truth labels
        (``pred_boxes`` (L, B, Q, 4), unused, keeps the costs' common
        signature)."""
        num_labels = gt.labels.size(1)
        prob = cls_scores.sigmoid().gather(
            -1, gt.labels[None, :, None].expand(
                cls_scores.shape[:3] + (num_labels, )))
        neg = -(1 - prob + self.eps).log() * (
            1 - self.alpha) * prob.pow(self.gamma)
        pos = -(prob + self.eps).log() * self.alpha * (
            1 - prob).pow(self.gamma)
        return (pos - neg) * self.weight


@TASK_UTILS.register_module()
class BatchedBBoxL1Cost(BBoxL1Cost):
    """mmdet's ``BBoxL1Cost`` for a whole batch."""

    def batched_cost(self, cls_scores: Tensor, pred_boxes: Tensor,
                     gt: PaddedGroundTruth) -> Tensor:
        """Weighted L1 distance (L, B, Q, T) of the predicted boxes
        ``pred_boxes`` (L, B, Q, 4, xyxy pixels) to each image's ground
        truth, both normalised by the image size, in ``box_format``."""
        pred, target = pred_boxes / gt.factors, gt.boxes / gt.factors
        if self.box_format == 'xywh':
            pred, target = (bbox_xyxy_to_cxcywh(pred),
                            bbox_xyxy_to_cxcywh(target))
        cost = torch.cdist(pred, target.expand(pred.size(0), -1, -1, -1),
                           p=1)
        return cost * self.weight


@TASK_UTILS.register_module()
class BatchedIoUCost(IoUCost):
    """mmdet's ``IoUCost`` (``'iou'`` or ``'giou'``) for a whole batch."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.iou_mode not in ('iou', 'giou'):
            raise ValueError(f"BatchedIoUCost: iou_mode must be 'iou' or "
                             f"'giou', got {self.iou_mode!r}")

    def batched_cost(self, cls_scores: Tensor, pred_boxes: Tensor,
                     gt: PaddedGroundTruth) -> Tensor:
        """Weighted negative (G)IoU (L, B, Q, T) of the predicted boxes
        ``pred_boxes`` (L, B, Q, 4, xyxy pixels) with each image's ground
        truth."""
        iou, giou = box_iou_giou(pred_boxes[..., None, :],
                                 gt.boxes[:, None])
        return -(giou if self.iou_mode == 'giou' else iou) * self.weight
