"""The set criterion of RT-DETR: matching and losses of a whole batch."""
from typing import Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.utils import ConfigType
from torch import Tensor, nn

from ..layers.host_transfer import host_to_device
from ..losses import AvgFactors, MatchedPredictions
from ..structures import GroundTruth

# mmdet's ``weight_reduce_loss`` divides by ``avg_factor + eps``.
AVG_FACTOR_EPS = torch.finfo(torch.float32).eps


@MODELS.register_module()
class RTDETRCriterion(nn.Module):
    """Hungarian matching and losses of RT-DETR (Zhao et al., CVPR 2024)
    for all decoder layers, images and queries of a batch at once, as the
    official ``RTDETRCriterion`` (``src/zoo/rtdetr/rtdetr_criterion.py``)
    works on the whole batch, with the loss terms and values of mmdet's
    ``DINOHead``.

    Three parts are supervised, each with every loss of ``losses``:

    - the decoder layers' matching queries, matched one-to-one to the
      ground truth by ``matcher`` (terms ``loss_<name>`` of the last layer,
      ``d<i>.loss_<name>`` of the others);
    - the encoder's top-k queries (``enc_loss_<name>``): matched in the
      same pass as the decoder layers, or, with
      ``class_agnostic_encoder``, as one class;
    - the denoising queries (``dn_loss_<name>``, ``d<i>.dn_loss_<name>``),
      whose targets are fixed by construction (DINO, Zhang et al., ICLR
      2023).

    The matching costs of every layer are computed in one pass and copied to
    the host once; each loss (:class:`~rtdetr_zoo.losses.MatchedLoss`)
    computes its term for all stacked layers of a part at once and divides
    it by the part's :class:`~rtdetr_zoo.losses.AvgFactors` (the number of
    matched queries, averaged over ranks). Adding a loss term is a
    registered ``MatchedLoss`` and one entry of ``losses``; adding a match
    cost is a registered class with a ``batched_cost`` method and one entry
    of ``matcher.match_costs``.

    Args:
        matcher (dict): ``TASK_UTILS`` config of the matcher,
            e.g. ``BatchedHungarianMatcher``.
        losses (dict[str, dict]): ``MODELS`` configs of the losses by term
            name (``cls`` -> ``loss_cls``); the loss dict lists them in this
            order.
        sync_cls_avg_factor (bool): Average the classification losses'
            normaliser over ranks too (the box losses' always is), as
            mmdet's DETR heads. Defaults to True.
        class_agnostic_encoder (bool): The encoder's scores are one
            class-agnostic "object" score (RT-DETRv2's ``'agnostic'`` query
            selection): its queries are matched and supervised as one
            class. Set by the head from the detector's
            ``query_select_method``. Defaults to False.
    """

    def __init__(self, matcher: ConfigType, losses: Dict[str, ConfigType],
                 sync_cls_avg_factor: bool = True,
                 class_agnostic_encoder: bool = False) -> None:
        super().__init__()
        if not losses:
            raise ValueError('RTDETRCriterion needs at least one loss')
        self.matcher = TASK_UTILS.build(matcher)
        self.losses = nn.ModuleDict(
            {name: MODELS.build(cfg) for name, cfg in losses.items()})
        self.sync_cls_avg_factor = sync_cls_avg_factor
        self.class_agnostic_encoder = class_agnostic_encoder

    def forward(self, cls_scores: Tensor, bbox_preds: Tensor,
                enc_cls_scores: Optional[Tensor],
                enc_bbox_preds: Optional[Tensor],
                dn_cls_scores: Optional[Tensor],
                dn_bbox_preds: Optional[Tensor], dn_meta: Optional[dict],
                gt: GroundTruth) -> Dict[str, Tensor]:
        """The loss dict of a batch.

        Args:
            cls_scores (Tensor): (n, B, Q, C) logits of the n decoder
                layers' matching queries.
            bbox_preds (Tensor): (n, B, Q, 4) normalised (cx, cy, w, h).
            enc_cls_scores (Tensor, optional): (B, Q, C) logits of the
                encoder's top-k queries ((B, Q, 1) with
                ``class_agnostic_encoder``).
            enc_bbox_preds (Tensor, optional): (B, Q, 4).
            dn_cls_scores (Tensor, optional): (n, B, D, C) logits of the
                denoising queries.
            dn_bbox_preds (Tensor, optional): (n, B, D, 4).
            dn_meta (dict, optional): ``num_denoising_queries`` (D) and
                ``num_denoising_groups``.
            gt (GroundTruth): the batch's ground truth.

        Returns:
            dict[str, Tensor]: mmdet's DINO loss dict: the last layer's
            terms, the other layers', the encoder's, then the denoising
            part's last layer and the others.
        """
        num_layers, _, num_queries = cls_scores.shape[:3]
        parts = {}
        with_encoder = enc_cls_scores is not None
        if with_encoder and not self.class_agnostic_encoder:
            # One matching pass for the decoder layers and the encoder.
            parts['matching'] = self._match(
                torch.cat([cls_scores, enc_cls_scores[None]]),
                torch.cat([bbox_preds, enc_bbox_preds[None]]), gt)
        else:
            parts['matching'] = self._match(cls_scores, bbox_preds, gt)
            if with_encoder:
                parts['encoder'] = self._match(
                    enc_cls_scores[None], enc_bbox_preds[None],
                    gt.with_one_class())
        num_matched = sum(min(count, num_queries) for count in gt.counts)
        counts = [num_matched]
        if dn_cls_scores is not None:
            parts['denoising'] = self._denoising_matches(
                dn_cls_scores, dn_bbox_preds, dn_meta, gt)
            counts.append(parts['denoising'].query_index.size(1))
        avg_factors = self._avg_factors(counts, cls_scores.device)
        part_factors = dict(matching=avg_factors[0], encoder=avg_factors[0],
                            denoising=avg_factors[-1])
        terms = {
            part: {name: loss(matches, part_factors[part])
                   for name, loss in self.losses.items()}
            for part, matches in parts.items()
        }

        losses = {}

        def add(part: str, layer: int, prefix: str) -> None:
            for name, values in terms[part].items():
                losses[f'{prefix}loss_{name}'] = values[layer]

        last = num_layers - 1
        add('matching', last, '')
        for layer in range(last):
            add('matching', layer, f'd{layer}.')
        if 'encoder' in parts:
            add('encoder', 0, 'enc_')
        elif with_encoder:
            # The encoder was matched as the layer after the decoder's.
            add('matching', num_layers, 'enc_')
        if 'denoising' in parts:
            add('denoising', last, 'dn_')
            for layer in range(last):
                add('denoising', layer, f'd{layer}.dn_')
        return losses

    def _match(self, cls_scores: Tensor, bbox_preds: Tensor,
               gt: GroundTruth) -> MatchedPredictions:
        query_index, gt_index = self.matcher(cls_scores, bbox_preds, gt)
        return MatchedPredictions(cls_scores, bbox_preds, query_index,
                                  gt_index, gt)

    @staticmethod
    def _denoising_matches(cls_scores: Tensor, bbox_preds: Tensor,
                           dn_meta: dict,
                           gt: GroundTruth) -> MatchedPredictions:
        """The denoising queries with a positive target (in the flattened
        (B * D) queries) and their ground truth: in image b, group g, the
        t-th ground truth is query ``b * D + g * D / groups + t``
        (mmdet's layout), the same for every layer."""
        num_groups = dn_meta['num_denoising_groups']
        num_queries = dn_meta['num_denoising_queries']
        group_size = num_queries // num_groups
        query_index, gt_index = [], []
        for image, (offset, count) in enumerate(zip(gt.offsets, gt.counts)):
            for group in range(num_groups):
                start = image * num_queries + group * group_size
                query_index += range(start, start + count)
                gt_index += range(offset, offset + count)
        index = host_to_device(
            torch.tensor([query_index, gt_index], dtype=torch.long),
            cls_scores.device)
        num_layers = cls_scores.size(0)
        return MatchedPredictions(cls_scores, bbox_preds,
                                  index[:1].expand(num_layers, -1),
                                  index[1:].expand(num_layers, -1), gt)

    def _avg_factors(self, counts: Sequence[int],
                     device: torch.device) -> List[AvgFactors]:
        """Normalisers of each part from its number of matched queries, as
        mmdet's DINOHead computes them: averaged over ranks (the
        classification one if ``sync_cls_avg_factor``) and at least 1. One
        all-reduce and one device-to-host copy in distributed training;
        plain Python otherwise."""
        synced = list(counts)
        if dist.is_available() and dist.is_initialized() and \
                dist.get_world_size() > 1:
            reduced = torch.tensor(counts, dtype=torch.float32,
                                   device=device)
            dist.all_reduce(reduced.div_(dist.get_world_size()))
            synced = reduced.tolist()
        return [
            AvgFactors(
                classification=max(synced[i] if self.sync_cls_avg_factor
                                   else counts[i], 1) + AVG_FACTOR_EPS,
                boxes=max(synced[i], 1) + AVG_FACTOR_EPS)
            for i in range(len(counts))
        ]
