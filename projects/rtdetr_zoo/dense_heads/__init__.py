"""The head and its batched criterion."""
from .rtdetr_criterion import RTDETRCriterion
from .rtdetr_head import RTDETRHead

__all__ = ['RTDETRCriterion', 'RTDETRHead']
