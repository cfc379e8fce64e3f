"""The set criterion of D-FINE and DEIM-D-FINE: the RT-DETR criterion with
the pre-refinement head, the layers' distributions and GO-LSD's union of
matches."""
import dataclasses
from typing import Dict, Optional

import torch
from mmdet.registry import MODELS
from torch import Tensor

from ..losses import AvgFactors, CornerDistributions, MatchedPredictions
from ..structures import GroundTruth
from ..task_modules.match_union import union_of_matches
from .rtdetr_criterion import RTDETRCriterion

# The official DDF weights scale the edge counts to a batch of 8 images.
DISTILLATION_BATCH = 8


@MODELS.register_module()
class DFINECriterion(RTDETRCriterion):
    """Matching and losses of D-FINE (Peng et al., ICLR 2025) and
    DEIM-D-FINE for a whole batch, as the official ``DEIMCriterion``
    (``engine/deim/deim_criterion.py`` of ShihuaHuang95/DEIM) computes
    them with ``use_uni_set``.

    :class:`RTDETRCriterion`'s parts and batched losses, plus:

    - the pre-refinement head of layer 0 (``pre.loss_<name>``,
      ``pre.dn_loss_<name>``) with layer 0's class logits;
    - the decoder layers' distributions (:class:`CornerDistributions`) for
      the losses that need them (FGL, DDF, ``needs_distributions``), in
      the decoder and the denoising parts;
    - with ``union_matching`` (GO-LSD), the localisation losses
      (``localization``: L1, GIoU, FGL, DDF) of the decoder layers, the
      pre-refinement head and the encoder are computed on the union of
      the matches of all of them
      (:func:`~rtdetr_zoo.task_modules.match_union.union_of_matches`) and
      divided by its size (averaged over ranks); the classification losses
      keep each layer's own matches. The denoising queries' targets are
      fixed, as in RT-DETR.

    The DDF weights of the matched and the unmatched query edges are the
    official ``sqrt(edges x 8 / B)`` of the decoder part's matches, for the
    denoising part too.

    Args:
        union_matching (bool): GO-LSD's union of matches (the official
            ``use_uni_set``). Defaults to True.
        **kwargs: :class:`RTDETRCriterion`'s arguments.
    """

    def __init__(self, *args, union_matching: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.union_matching = union_matching

    def forward(self, cls_scores: Tensor, bbox_preds: Tensor,
                corners: Tensor, initial_boxes: Tensor, pre_scores: Tensor,
                pre_boxes: Tensor, enc_cls_scores: Optional[Tensor],
                enc_bbox_preds: Optional[Tensor],
                dn_cls_scores: Optional[Tensor],
                dn_bbox_preds: Optional[Tensor],
                dn_corners: Optional[Tensor],
                dn_initial_boxes: Optional[Tensor],
                dn_pre_scores: Optional[Tensor],
                dn_pre_boxes: Optional[Tensor], dn_meta: Optional[dict],
                gt: GroundTruth, reg_max: int, up: Tensor,
                reg_scale: Tensor) -> Dict[str, Tensor]:
        """The loss dict of a batch.

        Args:
            cls_scores (Tensor): (n, B, Q, C) logits of the n decoder
                layers' matching queries.
            bbox_preds (Tensor): (n, B, Q, 4) normalised (cx, cy, w, h).
            corners (Tensor): (n, B, Q, 4 (reg_max + 1)) distribution
                logits.
            initial_boxes (Tensor): (B, Q, 4) the boxes they are decoded
                from.
            pre_scores (Tensor): (B, Q, C) layer 0's logits before the LQE.
            pre_boxes (Tensor): (B, Q, 4) the pre-refinement boxes.
            enc_cls_scores, enc_bbox_preds (Tensor, optional): (B, Q, C),
                (B, Q, 4) the encoder's top-k queries.
            dn_* (Tensor, optional): the same for the D denoising queries.
            dn_meta (dict, optional): ``num_denoising_queries``,
                ``num_denoising_groups``.
            gt (GroundTruth): the batch's ground truth.
            reg_max (int), up (Tensor), reg_scale (Tensor): the decoder's
                weighting function.

        Returns:
            dict[str, Tensor]: the terms of the last layer, the others
            (``d<i>.``), the pre-refinement head (``pre.``), the encoder
            (``enc_``) and the denoising part (``dn_``).
        """
        num_layers, batch_size, num_queries = cls_scores.shape[:3]

        def distributions(layer_corners, initial):
            return CornerDistributions(layer_corners, initial, reg_max, up,
                                       reg_scale)

        with_encoder = enc_cls_scores is not None
        joint_encoder = with_encoder and not self.class_agnostic_encoder
        stacked_scores = [cls_scores, pre_scores[None]]
        stacked_boxes = [bbox_preds, pre_boxes[None]]
        if joint_encoder:
            stacked_scores.append(enc_cls_scores[None])
            stacked_boxes.append(enc_bbox_preds[None])
        query_index, gt_index = self.matcher(
            torch.cat(stacked_scores), torch.cat(stacked_boxes), gt)
        all_query_index, all_gt_index = [query_index], [gt_index]
        layers = {'matching': slice(0, num_layers),
                  'pre': slice(num_layers, num_layers + 1),
                  'encoder': slice(num_layers + 1, num_layers + 2)}
        inputs = {
            'matching': (cls_scores, bbox_preds,
                         distributions(corners, initial_boxes)),
            'pre': (pre_scores[None], pre_boxes[None], None),
            'encoder': (enc_cls_scores[None] if with_encoder else None,
                        enc_bbox_preds[None] if with_encoder else None,
                        None)
        }
        own = {}
        joint_parts = ['matching', 'pre'] + ['encoder'] * joint_encoder
        for part in joint_parts:
            scores, boxes, dist = inputs[part]
            own[part] = MatchedPredictions(
                scores, boxes, query_index[layers[part]],
                gt_index[layers[part]], gt, dist)
        if with_encoder and not joint_encoder:
            own['encoder'] = self._match(enc_cls_scores[None],
                                         enc_bbox_preds[None],
                                         gt.with_one_class())
            all_query_index.append(own['encoder'].query_index)
            all_gt_index.append(own['encoder'].gt_index)

        num_matched = sum(min(count, num_queries) for count in gt.counts)
        union = {}
        if self.union_matching:
            union_query, union_gt = union_of_matches(
                torch.cat([q.flatten() for q in all_query_index]),
                torch.cat([g.flatten() for g in all_gt_index]))
            for part, matches in own.items():
                count = matches.num_layers
                union[part] = dataclasses.replace(
                    matches, query_index=union_query.expand(count, -1),
                    gt_index=union_gt.expand(count, -1), _iou_cache={})
            num_localized = union_query.numel()
        else:
            num_localized = num_matched
        counts = [num_matched, num_localized]
        if dn_cls_scores is not None:
            dn_matches = self._denoising_matches(dn_cls_scores, dn_bbox_preds,
                                                 dn_meta, gt)
            own['denoising'] = dataclasses.replace(
                dn_matches,
                distributions=distributions(dn_corners, dn_initial_boxes))
            own['pre_denoising'] = MatchedPredictions(
                dn_pre_scores[None], dn_pre_boxes[None],
                dn_matches.query_index[:1], dn_matches.gt_index[:1], gt)
            counts.append(dn_matches.query_index.size(1))
        factors = self._avg_factors(counts, cls_scores.device)
        edge_scale = DISTILLATION_BATCH / batch_size
        distillation = (
            (4 * num_localized * edge_scale)**0.5,
            (4 * (batch_size * num_queries - num_localized) * edge_scale)**0.5)
        own_factors = dataclasses.replace(factors[0],
                                          distillation=distillation)
        union_factors = AvgFactors(classification=factors[0].classification,
                                   boxes=factors[1].boxes,
                                   distillation=distillation)
        dn_factors = dataclasses.replace(
            factors[-1], distillation=distillation)

        terms = {}
        for part, matches in own.items():
            terms[part] = {}
            for name, loss in self.losses.items():
                if loss.needs_distributions and matches.distributions is None:
                    continue
                if part in ('denoising', 'pre_denoising'):
                    terms[part][name] = loss(matches, dn_factors)
                elif loss.localization and part in union:
                    terms[part][name] = loss(union[part], union_factors)
                else:
                    terms[part][name] = loss(matches, own_factors)

        losses = {}

        def add(part: str, layer: int, prefix: str, last: bool) -> None:
            for name, values in terms[part].items():
                if last and self.losses[name].teacher_last_layer:
                    continue
                losses[f'{prefix}loss_{name}'] = values[layer]

        last = num_layers - 1
        add('matching', last, '', True)
        for layer in range(last):
            add('matching', layer, f'd{layer}.', False)
        add('pre', 0, 'pre.', False)
        if with_encoder:
            add('encoder', 0, 'enc_', False)
        if 'denoising' in terms:
            add('denoising', last, 'dn_', True)
            for layer in range(last):
                add('denoising', layer, f'd{layer}.dn_', False)
            add('pre_denoising', 0, 'pre.dn_', False)
        return losses
