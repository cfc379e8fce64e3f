"""Losses of the criterion: each takes stacked decoder layers with their
matches (:class:`MatchedPredictions`) and explicit normalisers
(:class:`AvgFactors`)."""
from .box_losses import MatchedGIoULoss, MatchedL1Loss
from .matched_predictions import AvgFactors, MatchedLoss, MatchedPredictions
from .varifocal_loss import RTDETRVarifocalLoss, varifocal_loss

__all__ = [
    'AvgFactors', 'MatchedGIoULoss', 'MatchedL1Loss', 'MatchedLoss',
    'MatchedPredictions', 'RTDETRVarifocalLoss', 'varifocal_loss'
]
