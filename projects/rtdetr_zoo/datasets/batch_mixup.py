"""DEIM's batch mixup, as a batch augment of mmdet's data pre-processor."""
import random
from typing import List, Sequence, Tuple

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from torch import Tensor, nn


@MODELS.register_module()
class BatchRollMixup(nn.Module):
    """The mixup of DEIM's collate function (Huang et al., CVPR 2025; the
    official ``BatchImageCollateFunction.apply_mixup``,
    ``engine/data/dataloader.py``): with probability ``prob`` per batch,
    every image is blended with the previous one of the batch (the batch
    rolled by one), ``(1 - lam) * previous + lam * image`` with
    ``lam = round(uniform(*lambda_range), 6)`` drawn once per batch, and
    gets both images' boxes (its own first). Unlike mmdet's ``MixUp``
    transform, which blends in a random image of the dataset, it mixes
    within the batch, so it costs no extra image loading.

    A batch augment of ``DetDataPreprocessor.batch_augments``, placed before
    ``BatchSyncRandomResize`` (the official code mixes before its
    multi-scale resize). The images are mixed after the pre-processor's
    normalisation; with weights summing to 1 that equals mixing the raw
    pixels. Images of different sizes are mixed on the padded canvas, each
    at its top left, so every box keeps its pixel coordinates. The random
    numbers come from Python's ``random``, drawn as the official code draws
    them. ``StopAugmentationHook`` turns it on and off by epoch (DEIM's
    ``mixup_epochs``).

    Args:
        prob (float): Probability of mixing a batch. Defaults to 0.5.
        lambda_range (Sequence[float]): Range of the weight ``lam`` of each
            image itself. Defaults to (0.45, 0.55).
    """

    def __init__(self, prob: float = 0.5,
                 lambda_range: Sequence[float] = (0.45, 0.55)) -> None:
        super().__init__()
        if not 0 <= prob <= 1:
            raise ValueError(f'BatchRollMixup: prob must be in [0, 1], '
                             f'got {prob}')
        low, high = lambda_range
        if not 0 <= low <= high <= 1:
            raise ValueError(f'BatchRollMixup: lambda_range must be '
                             f'(low, high) with 0 <= low <= high <= 1, got '
                             f'{tuple(lambda_range)}')
        self.prob = prob
        self.lambda_range = (low, high)

    def forward(self, inputs: Tensor, data_samples: List[DetDataSample]
                ) -> Tuple[Tensor, List[DetDataSample]]:
        """Mix a batch (B, 3, H, W) and its samples' ground truth, or
        return them unchanged (no draw of ``lam`` then)."""
        if not random.random() < self.prob:
            return inputs, data_samples
        lam = round(random.uniform(*self.lambda_range), 6)
        mixed = inputs.roll(shifts=1, dims=0).mul_(1.0 - lam).add_(
            inputs.mul(lam))
        for key in ('gt_instances', 'ignored_instances'):
            if not any(key in sample for sample in data_samples):
                continue
            own = [sample.get(key, InstanceData()) for sample in data_samples]
            previous = own[-1:] + own[:-1]
            for sample, mine, other in zip(data_samples, own, previous):
                setattr(sample, key, InstanceData.cat([mine, other]))
        return mixed, data_samples
