"""Hungarian matching of every decoder layer and image in one pass."""
from typing import List, Tuple

import numpy as np
import torch
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import ConfigType
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..layers.host_transfer import host_to_device
from ..structures import GroundTruth
from .match_costs import PaddedGroundTruth


@TASK_UTILS.register_module()
class BatchedHungarianMatcher:
    """One-to-one matching of DETR predictions to the ground truth (Carion
    et al., ECCV 2020) for all layers and images of a batch at once.

    The cost of every (layer, image) pair is the sum of the match costs'
    :meth:`batched_cost` (``rtdetr_zoo/task_modules/match_costs.py``),
    computed in one pass over the ground truth padded to the largest image
    count, copied to the host once, and solved there per layer and image
    with scipy's ``linear_sum_assignment``, which is what mmdet's
    ``HungarianAssigner`` does one image at a time (and what the official
    RT-DETR's ``HungarianMatcher``, ``src/zoo/rtdetr/matcher.py``, does
    per image).

    Args:
        match_costs (list[dict]): ``TASK_UTILS`` configs of costs with a
            ``batched_cost(cls_scores, pred_boxes, gt)`` method, e.g.
            ``BatchedFocalLossCost``, ``BatchedBBoxL1Cost`` and
            ``BatchedIoUCost`` (mmdet's costs, batched).
    """

    def __init__(self, match_costs: List[ConfigType]) -> None:
        if not match_costs:
            raise ValueError('BatchedHungarianMatcher needs match_costs')
        self.match_costs = [
            cost if not isinstance(cost, dict) else TASK_UTILS.build(cost)
            for cost in match_costs
        ]
        for cost in self.match_costs:
            if not callable(getattr(cost, 'batched_cost', None)):
                raise TypeError(
                    f'BatchedHungarianMatcher computes the costs of all '
                    f'images at once: {type(cost).__name__} in '
                    f'match_costs has no batched_cost method (use '
                    f'BatchedFocalLossCost, BatchedBBoxL1Cost, '
                    f'BatchedIoUCost or a cost class that defines one)')

    def cost_matrices(self, cls_scores: Tensor, bbox_preds: Tensor,
                      gt: GroundTruth) -> Tensor:
        """Match costs (L, B, Q, T) of predictions against each image's
        ground truth, padded to T = the largest count (padding columns are
        meaningless).

        Args:
            cls_scores (Tensor): (L, B, Q, C) class logits.
            bbox_preds (Tensor): (L, B, Q, 4) normalised (cx, cy, w, h).
            gt (GroundTruth): the batch's ground truth.
        """
        padded = gt.padded_index()
        # The predictions in pixels of their image, as mmdet's assigner
        # sees them: (L, B, Q, 4), with factors (B, 1, 4).
        factors = gt.factors[padded][:, :1]
        targets = PaddedGroundTruth(labels=gt.labels[padded],
                                    boxes=gt.boxes[padded], factors=factors)
        pred_boxes = bbox_cxcywh_to_xyxy(bbox_preds) * factors
        return torch.stack([
            cost.batched_cost(cls_scores, pred_boxes, targets)
            for cost in self.match_costs
        ]).sum(0)

    def __call__(self, cls_scores: Tensor, bbox_preds: Tensor,
                 gt: GroundTruth) -> Tuple[Tensor, Tensor]:
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
