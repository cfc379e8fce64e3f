"""IoU and generalised IoU of broadcasting boxes, free of host-device
copies."""
from typing import Tuple

import torch
from torch import Tensor


def box_iou_giou(boxes1: Tensor, boxes2: Tensor,
                 eps: float = 1e-6) -> Tuple[Tensor, Tensor]:
    """IoU and generalised IoU (Rezatofighi et al., CVPR 2019) of xyxy
    boxes that broadcast against each other: aligned pairs for equal shapes
    (..., 4), every pair for (..., N, 1, 4) against (..., 1, M, 4).

    mmdet's ``bbox_overlaps`` arithmetic (union and enclosing area clamped
    at ``eps``) without its ``new_tensor([eps])``, a host-to-device copy
    per call on a GPU, and for any broadcast shape (``bbox_overlaps`` takes
    either aligned pairs or one (N, M) grid).

    Returns:
        tuple[Tensor, Tensor]: IoU and GIoU, the broadcast shape without
        the last dimension.
    """
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (
        boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (
        boxes2[..., 3] - boxes2[..., 1])
    overlap_wh = (torch.min(boxes1[..., 2:], boxes2[..., 2:]) -
                  torch.max(boxes1[..., :2], boxes2[..., :2])).clamp(min=0)
    overlap = overlap_wh[..., 0] * overlap_wh[..., 1]
    union = (area1 + area2 - overlap).clamp(min=eps)
    iou = overlap / union
    enclose_wh = (torch.max(boxes1[..., 2:], boxes2[..., 2:]) -
                  torch.min(boxes1[..., :2], boxes2[..., :2])).clamp(min=0)
    enclose = (enclose_wh[..., 0] * enclose_wh[..., 1]).clamp(min=eps)
    return iou, iou - (enclose - union) / enclose
