"""Losses of the criterion: each takes stacked decoder layers with their
matches (:class:`MatchedPredictions`) and explicit normalisers
(:class:`AvgFactors`)."""
from .box_losses import MatchedGIoULoss, MatchedL1Loss
from .matched_predictions import AvgFactors, MatchedLoss, MatchedPredictions
from .varifocal_loss import (IoUAwareClassificationLoss,
                             MatchabilityAwareLoss, RTDETRVarifocalLoss,
                             matchability_aware_loss, varifocal_loss)

__all__ = [
    'AvgFactors', 'IoUAwareClassificationLoss', 'MatchabilityAwareLoss',
    'MatchedGIoULoss', 'MatchedL1Loss', 'MatchedLoss', 'MatchedPredictions',
    'RTDETRVarifocalLoss', 'matchability_aware_loss', 'varifocal_loss'
]
