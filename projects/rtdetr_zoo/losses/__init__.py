"""Losses of the criterion: each takes stacked decoder layers with their
matches (:class:`MatchedPredictions`) and explicit normalisers
(:class:`AvgFactors`)."""
from .box_losses import MatchedGIoULoss, MatchedL1Loss
from .distribution_losses import (DecoupledDistillationFocalLoss,
                                  FineGrainedLocalizationLoss)
from .matched_predictions import (AvgFactors, CornerDistributions,
                                  MatchedLoss, MatchedPredictions)
from .varifocal_loss import (IoUAwareClassificationLoss,
                             MatchabilityAwareLoss, RTDETRVarifocalLoss,
                             matchability_aware_loss, varifocal_loss)

__all__ = [
    'AvgFactors', 'CornerDistributions', 'DecoupledDistillationFocalLoss',
    'FineGrainedLocalizationLoss', 'IoUAwareClassificationLoss',
    'MatchabilityAwareLoss', 'MatchedGIoULoss', 'MatchedL1Loss',
    'MatchedLoss', 'MatchedPredictions', 'RTDETRVarifocalLoss',
    'matchability_aware_loss', 'varifocal_loss'
]
