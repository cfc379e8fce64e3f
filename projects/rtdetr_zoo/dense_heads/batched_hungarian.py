"""Hungarian matching of every decoder layer and image in one pass."""
from dataclasses import dataclass
from functools import cached_property
from typing import List

import numpy as np
import torch
from mmdet.models.task_modules.assigners import (BBoxL1Cost, FocalLossCost,
                                                 HungarianAssigner, IoUCost)
from scipy.optimize import linear_sum_assignment

from ..layers.host_transfer import host_to_device
from .box_ops import box_iou_giou, cxcywh_to_xyxy, xyxy_to_cxcywh


@dataclass
class GroundTruth:
    """The ground truth of a batch, concatenated over its images.

    Attributes:
        labels (Tensor): (G,) class indices.
        boxes (Tensor): (G, 4) (x1, y1, x2, y2) in pixels.
        factors (Tensor): (G, 4) (w, h, w, h) of each box's image (the size
            the predictions are normalised by).
        counts (list[int]): boxes per image (G = sum).
    """
    labels: torch.Tensor
    boxes: torch.Tensor
    factors: torch.Tensor
    counts: List[int]

    @classmethod
    def from_instances(cls, batch_gt_instances, batch_img_metas):
        boxes = torch.cat([gt.bboxes for gt in batch_gt_instances])
        counts = [len(gt) for gt in batch_gt_instances]
        factors = []
        for meta, count in zip(batch_img_metas, counts):
            img_h, img_w = meta['img_shape']
            factors += [[img_w, img_h, img_w, img_h]] * count
        factors = torch.tensor(factors, dtype=boxes.dtype).view(-1, 4)
        return cls(
            labels=torch.cat([gt.labels for gt in batch_gt_instances]),
            boxes=boxes, factors=host_to_device(factors, boxes.device),
            counts=counts)

    @cached_property
    def offsets(self):
        """Index of each image's first box in the concatenation."""
        return np.cumsum([0] + self.counts[:-1]).tolist()

    @cached_property
    def normalized_cxcywh(self):
        """(G, 4) boxes as (cx, cy, w, h) normalised by their image size."""
        return xyxy_to_cxcywh(self.boxes / self.factors)


class BatchedHungarianMatcher:
    """One-to-one matching of DETR predictions to the ground truth (Carion
    et al., ECCV 2020) for all layers and images of a batch at once, with
    the match costs of an mmdet ``HungarianAssigner``.

    The cost of every (layer, image) pair is computed in one batched pass
    over the ground truth padded to the largest image count, copied to the
    host once, and solved there per layer and image with scipy's
    ``linear_sum_assignment``, which is what the assigner does one image at
    a time. The arithmetic of each cost is mmdet's (``FocalLossCost``,
    ``BBoxL1Cost``, ``IoUCost``: the same operations in the same order), so
    the assignments equal the per-image assigner's.

    Args:
        assigner (HungarianAssigner): the head's assigner; its match costs
            must be of the three kinds above.
    """

    SUPPORTED_COSTS = (FocalLossCost, BBoxL1Cost, IoUCost)

    def __init__(self, assigner):
        if not isinstance(assigner, HungarianAssigner):
            raise TypeError(
                f'RTDETRHead matches with a HungarianAssigner, got '
                f'{type(assigner).__name__} in train_cfg.assigner')
        for cost in assigner.match_costs:
            if not isinstance(cost, self.SUPPORTED_COSTS) or (
                    isinstance(cost, FocalLossCost) and cost.binary_input):
                raise TypeError(
                    f'RTDETRHead computes the match costs of all images '
                    f'at once and supports '
                    f'{[c.__name__ for c in self.SUPPORTED_COSTS]} (label '
                    f'input) in train_cfg.assigner.match_costs, got '
                    f'{type(cost).__name__}')
        self.match_costs = assigner.match_costs

    def cost_matrices(self, cls_scores, bbox_preds, gt):
        """Match costs (L, B, Q, T) of predictions against each image's
        ground truth, padded to T = the largest count (padding columns are
        meaningless).

        Args:
            cls_scores (Tensor): (L, B, Q, C) class logits.
            bbox_preds (Tensor): (L, B, Q, 4) normalised (cx, cy, w, h).
            gt (GroundTruth): the batch's ground truth.
        """
        num_images, max_count = len(gt.counts), max(gt.counts)
        # Padding columns repeat box 0 of the batch.
        padded = [offset + i if i < count else 0
                  for offset, count in zip(gt.offsets, gt.counts)
                  for i in range(max_count)]
        padded = host_to_device(
            torch.tensor(padded, dtype=torch.long),
            gt.boxes.device).view(num_images, max_count)
        gt_labels, gt_boxes = gt.labels[padded], gt.boxes[padded]
        # The predictions in pixels of their image, as the assigner sees
        # them: (L, B, Q, 4), with factors (B, 1, 4).
        factors = gt.factors[padded][:, :1]
        pred_boxes = cxcywh_to_xyxy(bbox_preds) * factors
        costs = []
        for cost in self.match_costs:
            if isinstance(cost, FocalLossCost):
                prob = cls_scores.sigmoid().gather(
                    -1, gt_labels[None, :, None].expand(
                        cls_scores.shape[:3] + (max_count, )))
                neg = -(1 - prob + cost.eps).log() * (
                    1 - cost.alpha) * prob.pow(cost.gamma)
                pos = -(prob + cost.eps).log() * cost.alpha * (
                    1 - prob).pow(cost.gamma)
                value = pos - neg
            elif isinstance(cost, BBoxL1Cost):
                pred, target = pred_boxes / factors, gt_boxes / factors
                if cost.box_format == 'xywh':
                    pred, target = xyxy_to_cxcywh(pred), xyxy_to_cxcywh(target)
                value = torch.cdist(
                    pred, target.expand(pred.size(0), -1, -1, -1), p=1)
            else:
                iou, giou = box_iou_giou(pred_boxes[..., None, :],
                                         gt_boxes[:, None])
                value = -(giou if cost.iou_mode == 'giou' else iou)
            costs.append(value * cost.weight)
        return torch.stack(costs).sum(0)

    def __call__(self, cls_scores, bbox_preds, gt):
        """Match every layer's predictions to the ground truth.

        Args:
            cls_scores (Tensor): (L, B, Q, C) class logits.
            bbox_preds (Tensor): (L, B, Q, 4) normalised (cx, cy, w, h).
            gt (GroundTruth): the batch's ground truth.

        Returns:
            tuple[Tensor, Tensor]: (L, M) indices of the matched predictions
            in the flattened (B * Q) queries, and of their ground truth in
            the concatenation, M = sum over images of min(Q, count).
        """
        num_layers, num_images, num_queries = cls_scores.shape[:3]
        device = cls_scores.device
        if sum(gt.counts) == 0:
            empty = torch.zeros((num_layers, 0), dtype=torch.long,
                                device=device)
            return empty, empty
        costs = self.cost_matrices(cls_scores, bbox_preds,
                                   gt).detach().cpu().numpy()
        query_index, gt_index = [], []
        for layer in range(num_layers):
            queries, gts = [], []
            for image, (offset, count) in enumerate(
                    zip(gt.offsets, gt.counts)):
                if count == 0:
                    continue
                rows, cols = linear_sum_assignment(
                    costs[layer, image, :, :count])
                queries.append(rows + image * num_queries)
                gts.append(cols + offset)
            query_index.append(np.concatenate(queries))
            gt_index.append(np.concatenate(gts))
        index = host_to_device(
            torch.from_numpy(np.stack([query_index, gt_index])).long(),
            device)
        return index[0], index[1]
