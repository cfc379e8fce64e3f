"""RT-DETR's IoU-aware varifocal loss."""
import torch
import torch.nn.functional as F

from mmdet.models.losses import QualityFocalLoss
from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.registry import MODELS


@MODELS.register_module()
class RTDETRVarifocalLoss(QualityFocalLoss):
    """IoU-aware classification loss of RT-DETR (Zhao et al., CVPR 2024).

    Varifocal loss (Zhang et al., VarifocalNet, CVPR 2021) as RT-DETR uses it:
    the target of a matched query's class is the IoU of its box with the
    ground truth, and

    ``loss = BCE(logit, t) * (alpha * sigmoid(logit)^gamma * (1 - onehot) + t)``

    with ``t = onehot * IoU``. It subclasses mmdet's ``QualityFocalLoss`` only
    to take the same ``(labels, iou_scores)`` target: mmdet's DETR heads then
    compute the IoU of the matched boxes themselves (matching part, encoder
    top-k and denoising part alike).

    Args:
        alpha (float): Weight of the negatives. Defaults to 0.75.
        gamma (float): Focusing exponent. Defaults to 2.0.
        reduction (str): 'none', 'mean' or 'sum'.
        loss_weight (float): Weight of the loss.

    Shapes: ``pred`` (N, C) logits; ``target`` = (labels (N,) in [0, C], with
    C meaning background; scores (N,) IoU in [0, 1]); ``weight`` (N,) or
    (N, C).
    """

    def __init__(self, alpha=0.75, gamma=2.0, reduction='mean',
                 loss_weight=1.0):
        super().__init__(use_sigmoid=True, beta=gamma, reduction=reduction,
                         loss_weight=loss_weight)
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, pred, target, weight=None, avg_factor=None,
                reduction_override=None):
        if reduction_override not in (None, 'none', 'mean', 'sum'):
            raise ValueError(
                f'reduction_override must be none/mean/sum, got '
                f'{reduction_override!r}')
        if not isinstance(target, (tuple, list)) or len(target) != 2:
            raise TypeError(
                'RTDETRVarifocalLoss expects target=(labels, iou_scores)')
        labels, scores = target
        # One-hot of the labels, background (C) all zeros; a comparison, not
        # F.one_hot, which reads the labels' min and max on the host.
        onehot = (labels[:, None] == torch.arange(
            pred.size(-1), device=labels.device)).to(pred.dtype)
        target_score = onehot * scores.to(pred.dtype)[:, None]
        pred_score = pred.sigmoid().detach()
        focal_weight = (self.alpha * pred_score.pow(self.gamma) *
                        (1 - onehot) + target_score)
        loss = F.binary_cross_entropy_with_logits(
            pred, target_score, reduction='none') * focal_weight
        if weight is not None and weight.dim() == 1:
            weight = weight[:, None]
        loss = weight_reduce_loss(loss, weight, reduction_override or
                                  self.reduction, avg_factor)
        return self.loss_weight * loss
