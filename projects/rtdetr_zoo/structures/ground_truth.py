"""The ground truth of a batch, concatenated over its images."""
from dataclasses import dataclass
from functools import cached_property
from typing import List, Sequence

import numpy as np
import torch
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from mmengine.structures import InstanceData
from torch import Tensor

from ..layers.host_transfer import host_to_device


@dataclass
class GroundTruth:
    """The ground truth of a batch, concatenated over its images: what the
    denoising queries, the matcher and the losses read, built once per
    batch without a device operation per image.

    Attributes:
        labels (Tensor): (G,) class indices.
        boxes (Tensor): (G, 4) (x1, y1, x2, y2) in pixels.
        factors (Tensor): (G, 4) (w, h, w, h) of each box's image (the size
            the predictions are normalised by).
        counts (list[int]): boxes per image (G = sum).
    """
    labels: Tensor
    boxes: Tensor
    factors: Tensor
    counts: List[int]

    @classmethod
    def from_instances(cls, batch_gt_instances: Sequence[InstanceData],
                       batch_img_metas: Sequence[dict]) -> 'GroundTruth':
        """Concatenate per-image ``bboxes`` (pixels, xyxy) and ``labels``;
        the factors come from each meta's ``img_shape`` (h, w), known on
        the host, in one host-to-device copy."""
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

    @property
    def num_images(self) -> int:
        return len(self.counts)

    @cached_property
    def offsets(self) -> List[int]:
        """Index of each image's first box in the concatenation."""
        return np.cumsum([0] + self.counts[:-1]).tolist()

    @cached_property
    def normalized_cxcywh(self) -> Tensor:
        """(G, 4) boxes as (cx, cy, w, h) normalised by their image size."""
        return bbox_xyxy_to_cxcywh(self.boxes / self.factors)

    def padded_index(self) -> Tensor:
        """(B, T) index of each image's boxes in the concatenation, padded
        to T = the largest count with box 0 of the batch (padding entries
        are meaningless; callers read the first ``counts[b]`` of row b)."""
        max_count = max(self.counts)
        padded = [offset + i if i < count else 0
                  for offset, count in zip(self.offsets, self.counts)
                  for i in range(max_count)]
        return host_to_device(
            torch.tensor(padded, dtype=torch.long),
            self.boxes.device).view(self.num_images, max_count)

    def with_one_class(self) -> 'GroundTruth':
        """The same boxes, every label 0: the targets of class-agnostic
        scores (RT-DETRv2's ``'agnostic'`` query selection)."""
        return GroundTruth(labels=torch.zeros_like(self.labels),
                           boxes=self.boxes, factors=self.factors,
                           counts=self.counts)
