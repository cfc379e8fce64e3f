"""Data structures shared by the denoising queries, the matcher and the
losses."""
from .box_iou import box_iou_giou
from .ground_truth import GroundTruth

__all__ = ['GroundTruth', 'box_iou_giou']
