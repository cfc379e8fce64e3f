"""What every loss of :class:`~rtdetr_zoo.dense_heads.RTDETRCriterion`
takes: stacked decoder layers with their matches, and the normalisers."""
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Dict, Optional, Tuple

from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor, nn

from ..layers.fdr import box_to_distance
from ..structures import GroundTruth, box_iou_giou


@dataclass(frozen=True)
class AvgFactors:
    """The normalisers of a part's losses (mmdet's ``avg_factor``): the
    number of matched predictions, averaged over ranks and at least 1.

    Attributes:
        classification (float): of classification losses (averaged over
            ranks only with ``sync_cls_avg_factor``, as in mmdet's DETR
            heads).
        boxes (float): of box losses.
        distillation (tuple[float, float]): weights of the matched and the
            unmatched query edges in D-FINE's distillation loss
            (:class:`~rtdetr_zoo.losses.DecoupledDistillationFocalLoss`).
    """
    classification: float
    boxes: float
    distillation: Tuple[float, float] = (1.0, 1.0)


@dataclass(eq=False)
class CornerDistributions:
    """D-FINE's per-edge distributions of L stacked decoder layers (the
    fine-grained distribution refinement,
    :class:`~rtdetr_zoo.layers.DFINETransformerDecoder`).

    Attributes:
        corners (Tensor): (L, B, Q, 4 (reg_max + 1)) logits, edges (l, t, r,
            b).
        initial_boxes (Tensor): (B, Q, 4) the (detached) boxes the
            distributions are decoded from, (cx, cy, w, h).
        reg_max (int): Bins minus one.
        up (Tensor), reg_scale (Tensor): (1, ) the weighting function's
            parameters.
    """
    corners: Tensor
    initial_boxes: Tensor
    reg_max: int
    up: Tensor
    reg_scale: Tensor


@dataclass(eq=False)
class MatchedPredictions:
    """The predictions of L stacked decoder layers (or the encoder's top-k,
    or the denoising queries) and their matches to the ground truth.

    Derived tensors are computed once and shared by the losses (the matched
    boxes, their targets and their IoU feed the classification, L1 and
    GIoU losses alike).

    Attributes:
        cls_scores (Tensor): (L, B, Q, C) logits.
        bbox_preds (Tensor): (L, B, Q, 4) normalised (cx, cy, w, h).
        query_index (Tensor): (L, M) matched queries in the flattened
            (B * Q) queries of each layer.
        gt_index (Tensor): (L, M) their ground truth in ``gt``.
        gt (GroundTruth): the batch's ground truth.
        distributions (CornerDistributions, optional): the layers' FDR
            distributions (D-FINE).
    """
    cls_scores: Tensor
    bbox_preds: Tensor
    query_index: Tensor
    gt_index: Tensor
    gt: GroundTruth
    distributions: Optional[CornerDistributions] = None
    _iou_cache: Dict[float, Tuple[Tensor, Tensor]] = field(
        default_factory=dict, repr=False)

    @property
    def num_layers(self) -> int:
        return self.cls_scores.size(0)

    @property
    def num_classes(self) -> int:
        return self.cls_scores.size(-1)

    @cached_property
    def flat_cls_scores(self) -> Tensor:
        """(L, B * Q, C) logits."""
        return self.cls_scores.flatten(1, 2)

    @cached_property
    def matched_boxes(self) -> Tensor:
        """(L, M, 4) normalised (cx, cy, w, h) of the matched queries."""
        return self.bbox_preds.flatten(1, 2).gather(
            1, self.query_index[..., None].expand(-1, -1, 4))

    @cached_property
    def target_boxes(self) -> Tensor:
        """(L, M, 4) normalised (cx, cy, w, h) of their ground truth."""
        return self.gt.normalized_cxcywh[self.gt_index]

    @cached_property
    def target_labels(self) -> Tensor:
        """(L, B * Q) class target of every query: its ground truth's
        label where matched, C (background) elsewhere."""
        labels = self.query_index.new_full(self.flat_cls_scores.shape[:2],
                                           self.num_classes)
        return labels.scatter_(1, self.query_index,
                               self.gt.labels[self.gt_index])

    @cached_property
    def matched_corners(self) -> Tensor:
        """(L, M, 4, reg_max + 1) distribution logits of the matched
        queries."""
        corners = self.distributions.corners.flatten(1, 2)
        corners = corners.gather(1, self.query_index[..., None].expand(
            -1, -1, corners.size(-1)))
        return corners.unflatten(-1, (4, -1))

    @cached_property
    def localization_targets(self) -> Tuple[Tensor, Tensor, Tensor]:
        """(L, M, 4) each: D-FINE's fine-grained localisation targets of
        the matched queries' edges from their initial boxes
        (:func:`~rtdetr_zoo.layers.fdr.box_to_distance`): the left bin,
        the right bin's weight and the left bin's weight."""
        dist = self.distributions
        initial = dist.initial_boxes.flatten(0, 1)[self.query_index]
        targets = box_to_distance(
            initial.flatten(0, 1).detach(),
            bbox_cxcywh_to_xyxy(self.target_boxes.flatten(0, 1)),
            dist.reg_max, dist.reg_scale, dist.up)
        return tuple(t.view(*self.query_index.shape, 4) for t in targets)

    def iou_giou(self, eps: float = 1e-6) -> Tuple[Tensor, Tensor]:
        """(L, M) IoU and GIoU of the matched boxes with their targets, in
        pixels of their image as mmdet's DETR heads compute them."""
        if eps not in self._iou_cache:
            factors = self.gt.factors[self.gt_index]
            self._iou_cache[eps] = box_iou_giou(
                bbox_cxcywh_to_xyxy(self.matched_boxes) * factors,
                bbox_cxcywh_to_xyxy(self.target_boxes) * factors, eps=eps)
        return self._iou_cache[eps]


class MatchedLoss(nn.Module, metaclass=ABCMeta):
    """Base of the criterion's losses: each computes its term for all
    stacked layers, images and queries at once.

    A loss is registered in ``MODELS`` and named in the criterion's
    ``losses`` config (``losses=dict(cls=..., bbox=..., iou=...)`` gives the
    terms ``loss_cls``, ``loss_bbox``, ``loss_iou``, ``d0.loss_cls``, ...).

    Args:
        loss_weight (float): Weight of the term.
    """

    #: Computed on the union of the layers' matches when the criterion
    #: has one (D-FINE's box and localisation losses).
    localization = False
    #: Needs the layers' ``distributions`` (D-FINE): not computed for a
    #: part without them.
    needs_distributions = False
    #: The last layer is the teacher of the others and has no term.
    teacher_last_layer = False

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    @abstractmethod
    def forward(self, matches: MatchedPredictions,
                avg_factors: AvgFactors) -> Tensor:
        """The weighted, normalised loss of each layer, (L,)."""
