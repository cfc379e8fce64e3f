"""Box arithmetic of the batched criterion, free of host-device copies."""
import torch


def cxcywh_to_xyxy(boxes):
    """(..., 4) (cx, cy, w, h) -> (x1, y1, x2, y2)."""
    center, size = boxes[..., :2], boxes[..., 2:]
    return torch.cat([center - 0.5 * size, center + 0.5 * size], -1)


def xyxy_to_cxcywh(boxes):
    """(..., 4) (x1, y1, x2, y2) -> (cx, cy, w, h)."""
    top_left, bottom_right = boxes[..., :2], boxes[..., 2:]
    return torch.cat([(top_left + bottom_right) / 2,
                      bottom_right - top_left], -1)


def box_iou_giou(boxes1, boxes2, eps=1e-6):
    """IoU and generalised IoU (Rezatofighi et al., CVPR 2019) of xyxy
    boxes that broadcast against each other: aligned pairs for equal shapes
    (..., 4), every pair for (..., N, 1, 4) against (..., 1, M, 4).

    mmdet's ``bbox_overlaps`` arithmetic (union and enclosing area clamped
    at ``eps``) without its ``new_tensor([eps])``, a host-to-device copy
    per call on a GPU.

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
