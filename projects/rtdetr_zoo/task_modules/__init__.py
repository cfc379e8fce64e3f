"""The criterion's matcher and its match costs."""
from .batched_hungarian_matcher import BatchedHungarianMatcher
from .match_union import union_of_matches
from .match_costs import (BatchedBBoxL1Cost, BatchedFocalLossCost,
                          BatchedIoUCost, PaddedGroundTruth)

__all__ = [
    'BatchedBBoxL1Cost', 'BatchedFocalLossCost', 'BatchedHungarianMatcher',
    'BatchedIoUCost', 'PaddedGroundTruth', 'union_of_matches'
]
