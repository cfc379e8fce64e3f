"""The heads and their batched criteria."""
from .rtdetr_criterion import RTDETRCriterion
from .rtdetr_head import RTDETRHead
from .dfine_criterion import DFINECriterion
from .dfine_head import DFINEHead

__all__ = ['DFINECriterion', 'DFINEHead', 'RTDETRCriterion', 'RTDETRHead']
