"""Contrastive denoising queries for the whole batch at once."""
import math
from typing import Dict, Tuple

import torch
from mmdet.models.layers import CdnQueryGenerator
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from torch import Tensor

from ..structures import GroundTruth
from .host_transfer import host_to_device


class BatchedCdnQueryGenerator(CdnQueryGenerator):
    """mmdet's ``CdnQueryGenerator`` (DINO, Zhang et al., ICLR 2023, as
    RT-DETR uses it) with its per-image work done in one pass.

    The noise is drawn exactly as mmdet draws it (the same random calls on
    the same concatenated ground truth), so a seeded batch gives the same
    queries. What changes is the bookkeeping around it: the per-image
    normalisation factors, the placement of each noised box into its image's
    padded slots and the group attention mask are computed from Python
    integers (the ground-truth counts are known on the host) with a handful
    of tensor operations, instead of a loop per image and per group whose
    ``max`` / ``arange`` over device tensors stall the host on a GPU.

    The one remaining synchronisation is mmdet's ``nonzero`` in
    :meth:`generate_dn_label_query`: which labels get noise decides how many
    random labels are drawn, and keeping that draw keeps the seeded noise
    (and so the stored loss reference) unchanged.

    Returns the same tuple as mmdet: label queries (B, D, d), box queries
    (B, D, 4) as logit(cx, cy, w, h), the (D + Q, D + Q) bool attention
    mask (True: attention forbidden) and ``dn_meta``, with
    D = 2 * groups * max ground truths per image.

    Args:
        box_logit_eps (float): Clamp of the noised boxes before the logit
            (``inverse_sigmoid``): mmdet's 1e-3 by default; the official
            RT-DETR (v1 and v2) uses 1e-5, which the RT-DETRv2 configs set.
        pad_with_empty_box (bool): The box query of a padding slot (an image
            with fewer ground truths than the batch's maximum): mmdet's
            logit 0, the box (0.5, 0.5, 0.5, 0.5), by default; with True the
            official RT-DETR's empty box at the origin, logit(0) clamped at
            ``box_logit_eps``. Padding queries take part in their group's
            self-attention, so this changes the other queries' outputs; the
            RT-DETRv2 configs set it (the official v2 losses are matched).
        **kwargs: ``CdnQueryGenerator``'s arguments.
    """

    def __init__(self, *args, box_logit_eps: float = 1e-3,
                 pad_with_empty_box: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.box_logit_eps = box_logit_eps
        self.pad_with_empty_box = pad_with_empty_box

    def __call__(
        self, batch_data_samples: SampleList
    ) -> Tuple[Tensor, Tensor, Tensor, Dict[str, int]]:
        gt = GroundTruth.from_instances(
            [sample.gt_instances for sample in batch_data_samples],
            [sample.metainfo for sample in batch_data_samples])
        max_num_target = max(gt.counts)
        num_groups = self.get_num_groups(max_num_target)
        labels, bboxes, device = gt.labels, gt.boxes, gt.boxes.device
        # The padded slot of each ground truth in the first positive part:
        # image * D + local index.
        num_queries = 2 * max_num_target * num_groups
        slots = [slot for image, count in enumerate(gt.counts)
                 for slot in range(image * num_queries,
                                   image * num_queries + count)]
        slots = host_to_device(torch.tensor(slots, dtype=torch.long), device)

        label_query = self.generate_dn_label_query(labels, num_groups)
        bbox_query = self.generate_dn_bbox_query(bboxes / gt.factors,
                                                 num_groups)
        # The noised copies are ordered (2 * groups, ground truths): copy r
        # of a ground truth goes to slot r * max_num_target of its image.
        index = (slots[None] + max_num_target * torch.arange(
            2 * num_groups, device=device)[:, None]).flatten()
        batch_size = len(batch_data_samples)
        batched_label_query = label_query.new_zeros(
            (batch_size * num_queries, self.embed_dims)).index_copy(
                0, index, label_query)
        padding = math.log(self.box_logit_eps) if self.pad_with_empty_box \
            else 0.0
        batched_bbox_query = bbox_query.new_full(
            (batch_size * num_queries, 4), padding).index_copy(
                0, index, bbox_query)
        attn_mask = self.generate_dn_mask(max_num_target, num_groups, device)
        dn_meta = dict(num_denoising_queries=num_queries,
                       num_denoising_groups=num_groups)
        return (batched_label_query.view(batch_size, num_queries,
                                         self.embed_dims),
                batched_bbox_query.view(batch_size, num_queries, 4),
                attn_mask, dn_meta)

    def generate_dn_bbox_query(self, gt_bboxes: Tensor,
                               num_groups: int) -> Tensor:
        """Noised boxes, ``2 * num_groups`` copies of the (G, 4) normalised
        xyxy ground truth: mmdet's noise (the same random draws and
        arithmetic: each corner moves by up to ``box_noise_scale / 2`` of
        the box size in the even copies, the positives, and by between one
        and two times that in the odd copies, the negatives), returned as
        logit(cx, cy, w, h) (2 * groups * G, 4) with ``box_logit_eps``."""
        expanded = gt_bboxes.repeat(2 * num_groups, 1)
        num_gts = len(gt_bboxes)
        negative = torch.arange(
            len(expanded), device=gt_bboxes.device) // max(num_gts, 1) % 2
        sign = torch.randint_like(
            expanded, low=0, high=2, dtype=torch.float32) * 2.0 - 1.0
        part = (torch.rand_like(expanded) + negative[:, None]) * sign
        size = bbox_xyxy_to_cxcywh(expanded)[:, 2:].repeat(1, 2)
        noisy = expanded + torch.mul(part, size) * \
            self.box_noise_scale / 2
        noisy = bbox_xyxy_to_cxcywh(noisy.clamp(min=0.0, max=1.0))
        return inverse_sigmoid(noisy, eps=self.box_logit_eps)

    def generate_dn_mask(self, max_num_target: int, num_groups: int,
                         device: torch.device) -> Tensor:
        """(D + Q, D + Q) bool mask, True where attention is forbidden: a
        denoising group sees only itself (and the matching queries), the
        matching queries see only themselves. mmdet's mask, built without a
        loop over the groups."""
        num_dn = 2 * max_num_target * num_groups
        index = torch.arange(num_dn + self.num_matching_queries,
                             device=device)
        if num_dn == 0:
            return torch.zeros((index.numel(), index.numel()),
                               dtype=torch.bool, device=device)
        group = index // (2 * max_num_target)
        return (group[:, None] != group[None]) & (index[None] < num_dn)
