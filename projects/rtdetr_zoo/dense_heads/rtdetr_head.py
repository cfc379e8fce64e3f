"""RT-DETR head on mmdet's DINOHead."""
from dataclasses import replace

import torch
import torch.distributed as dist
from mmengine.structures import InstanceData

from mmdet.models.dense_heads import DINOHead
from mmdet.models.losses import GIoULoss, L1Loss, QualityFocalLoss
from mmdet.registry import MODELS

from ..layers.host_transfer import host_to_device
from .batched_hungarian import BatchedHungarianMatcher, GroundTruth
from .box_ops import box_iou_giou, cxcywh_to_xyxy

# mmdet's ``weight_reduce_loss`` divides by ``avg_factor + eps``.
AVG_FACTOR_EPS = torch.finfo(torch.float32).eps


@MODELS.register_module()
class RTDETRHead(DINOHead):
    """Head of RT-DETR (Zhao et al., CVPR 2024).

    mmdet's ``DINOHead`` (per-layer class ``Linear`` and 3-layer box MLP,
    Hungarian matching, auxiliary losses on every decoder layer, the encoder
    top-k and the denoising part) with RT-DETR's losses: the IoU-aware
    :class:`RTDETRVarifocalLoss` (alpha 0.75, gamma 2), L1 (5) and GIoU (2).

    Boxes are predicted normalised to the padded batch canvas (see
    :class:`RTDETR`); :meth:`_predict_by_feat_single` maps them to the image
    before mmdet's usual scaling, clipping and rescaling.

    Under autocast (bf16 inference or ``--amp`` training) the head runs in
    float32: class scores, box regression and refinement, and so the losses
    and the final boxes, keep float32 precision (a bf16 box coordinate
    near 640 px would be rounded to 4 px).

    The losses are DINOHead's, computed for the whole batch at once as the
    official RT-DETR criterion does: one Hungarian matching pass for every
    decoder layer and the encoder top-k (:class:`BatchedHungarianMatcher`,
    one device-to-host copy of the costs), then each loss over all layers
    and images in one go, and the denoising part likewise. The loss dict
    (``loss_cls``, ``d0.loss_bbox``, ``enc_loss_iou``, ``dn_loss_cls``,
    ...) and its values are mmdet's; no per-image or per-layer loop runs on
    the device. ``loss_bbox`` must be an ``L1Loss`` and ``loss_iou`` a
    ``GIoULoss`` (their weights and eps are used).
    """

    def __init__(self, *args,
                 loss_cls=dict(type='RTDETRVarifocalLoss', alpha=0.75,
                               gamma=2.0, loss_weight=1.0),
                 loss_bbox=dict(type='L1Loss', loss_weight=5.0),
                 loss_iou=dict(type='GIoULoss', loss_weight=2.0), **kwargs):
        super().__init__(*args, loss_cls=loss_cls, loss_bbox=loss_bbox,
                         loss_iou=loss_iou, **kwargs)
        if not isinstance(self.loss_cls, QualityFocalLoss):
            raise TypeError(
                f'RTDETRHead needs an IoU-aware classification loss taking '
                f'(labels, iou) targets such as RTDETRVarifocalLoss, got '
                f'{type(self.loss_cls).__name__}')
        for name, loss, kind in (('loss_bbox', self.loss_bbox, L1Loss),
                                 ('loss_iou', self.loss_iou, GIoULoss)):
            if not isinstance(loss, kind):
                raise TypeError(
                    f'RTDETRHead computes its losses for the whole batch at '
                    f'once and needs {name} to be a {kind.__name__}, got '
                    f'{type(loss).__name__}')
        self.matcher = BatchedHungarianMatcher(self.assigner) \
            if hasattr(self, 'assigner') else None

    def forward(self, hidden_states, references):
        """(n, B, Q, d) hidden states and n + 1 references (B, Q, 4) -> class
        logits (n, B, Q, C) and boxes (n, B, Q, 4), in float32."""
        with torch.autocast(hidden_states.device.type, enabled=False):
            return super().forward(hidden_states.float(),
                                   [ref.float() for ref in references])

    def loss_by_feat(self, all_layers_cls_scores, all_layers_bbox_preds,
                     enc_cls_scores, enc_bbox_preds, batch_gt_instances,
                     batch_img_metas, dn_meta, batch_gt_instances_ignore=None):
        """DINOHead's losses for the whole batch at once.

        Args:
            all_layers_cls_scores (Tensor): (n, B, D + Q, C) logits of the
                n decoder layers, the D denoising queries first.
            all_layers_bbox_preds (Tensor): (n, B, D + Q, 4) normalised
                (cx, cy, w, h).
            enc_cls_scores, enc_bbox_preds (Tensor, optional): (B, Q, C) and
                (B, Q, 4) of the encoder's top-k queries.
            batch_gt_instances (list[InstanceData]): ``bboxes`` (pixels,
                xyxy) and ``labels`` per image.
            batch_img_metas (list[dict]): ``img_shape`` per image.
            dn_meta (dict, optional): ``num_denoising_queries`` and
                ``num_denoising_groups``.

        Returns:
            dict[str, Tensor]: mmdet's DINO loss dict.
        """
        if batch_gt_instances_ignore is not None:
            raise ValueError('RTDETRHead does not support ignored boxes')
        if self.matcher is None:
            raise RuntimeError('RTDETRHead.loss needs train_cfg.assigner')
        gt = GroundTruth.from_instances(batch_gt_instances, batch_img_metas)
        (match_cls, match_boxes, dn_cls, dn_boxes) = self.split_outputs(
            all_layers_cls_scores, all_layers_bbox_preds, dn_meta)
        num_layers, num_images, num_queries = match_cls.shape[:3]
        # Parts: (per-layer loss sums, their layers' names, normaliser: 0
        # matching, 1 denoising). The encoder's top-k joins the decoder
        # layers' matching pass unless its scores are class-agnostic
        # (RT-DETRv2 'agnostic': matched and supervised as one class).
        names = [f'd{i}.loss' for i in range(num_layers - 1)] + ['loss']
        enc_gt = None
        if enc_cls_scores is not None:
            if enc_cls_scores.size(-1) == match_cls.size(-1):
                match_cls = torch.cat([match_cls, enc_cls_scores[None]])
                match_boxes = torch.cat([match_boxes, enc_bbox_preds[None]])
                names.append('enc_loss')
            else:
                enc_gt = replace(gt, labels=torch.zeros_like(gt.labels))
        parts = [(self._matched_loss_sums(match_cls, match_boxes, gt),
                  names, 0)]
        if enc_gt is not None:
            parts.append((self._matched_loss_sums(
                enc_cls_scores[None], enc_bbox_preds[None], enc_gt),
                ['enc_loss'], 0))
        num_pos = sum(min(count, num_queries) for count in gt.counts)
        # (positive, negative) counts of the matching part, then of the
        # denoising part (if any).
        counts = [num_pos, num_images * num_queries - num_pos]
        if dn_cls is not None:
            query_index, gt_index = self._denoising_targets(
                gt, dn_meta, match_cls.device)
            counts += [query_index.numel(), query_index.numel()]
            parts.append((self._loss_sums(
                dn_cls, dn_boxes, query_index.expand(dn_cls.size(0), -1),
                gt_index.expand(dn_cls.size(0), -1), gt),
                [f'd{i}.dn_loss' for i in range(num_layers - 1)] +
                ['dn_loss'], 1))
        factors = self._avg_factors(counts, match_cls.device)

        losses = {}
        for (loss_cls, loss_bbox, loss_iou), layer_names, part in parts:
            cls_factor, box_factor = factors[2 * part:2 * part + 2]
            for layer, name in enumerate(layer_names):
                losses[f'{name}_cls'] = loss_cls[layer] / cls_factor
                losses[f'{name}_bbox'] = loss_bbox[layer] / box_factor
                losses[f'{name}_iou'] = loss_iou[layer] / box_factor
        # mmdet's order: the last layer, the others, the encoder, then the
        # denoising part's last layer and the others.
        order = ['loss'] + names[:num_layers - 1] + ['enc_loss', 'dn_loss'] \
            + [f'd{i}.dn_loss' for i in range(num_layers - 1)]
        return {f'{name}_{kind}': losses[f'{name}_{kind}'] for name in order
                for kind in ('cls', 'bbox', 'iou')
                if f'{name}_{kind}' in losses}

    def _matched_loss_sums(self, cls_scores, bbox_preds, gt):
        """:meth:`_loss_sums` of the Hungarian matching of every layer of
        ``cls_scores`` (L, B, Q, C) and ``bbox_preds`` (L, B, Q, 4)."""
        query_index, gt_index = self.matcher(cls_scores, bbox_preds, gt)
        return self._loss_sums(cls_scores, bbox_preds, query_index, gt_index,
                               gt)

    def _loss_sums(self, cls_scores, bbox_preds, query_index, gt_index, gt):
        """Per-layer sums of the weighted classification, L1 and GIoU losses
        of matched predictions.

        Args:
            cls_scores (Tensor): (L, B, Q, C) logits.
            bbox_preds (Tensor): (L, B, Q, 4) normalised (cx, cy, w, h).
            query_index (Tensor): (L, M) matched queries in the flattened
                (B * Q) queries of each layer.
            gt_index (Tensor): (L, M) their ground truth in ``gt``.
            gt (GroundTruth): the batch's ground truth.

        Returns:
            tuple[Tensor, Tensor, Tensor]: three (L,) sums.
        """
        num_layers, num_classes = cls_scores.size(0), cls_scores.size(-1)
        cls_scores = cls_scores.flatten(1, 2)
        bbox_preds = bbox_preds.flatten(1, 2)
        matched = bbox_preds.gather(
            1, query_index[..., None].expand(-1, -1, 4))
        targets = gt.normalized_cxcywh[gt_index]
        factors = gt.factors[gt_index]
        # IoU-aware targets of the classification loss and the GIoU loss,
        # both on boxes in pixels as mmdet computes the GIoU loss.
        iou, giou = box_iou_giou(
            cxcywh_to_xyxy(matched) * factors,
            cxcywh_to_xyxy(targets) * factors, eps=self.loss_iou.eps)
        labels = query_index.new_full(cls_scores.shape[:2], num_classes)
        labels.scatter_(1, query_index, gt.labels[gt_index])
        scores = cls_scores.new_zeros(cls_scores.shape[:2]).scatter_(
            1, query_index, iou.detach())
        loss_cls = self.loss_cls(
            cls_scores.flatten(0, 1), (labels.flatten(), scores.flatten()),
            reduction_override='none').view(num_layers, -1).sum(1)
        loss_bbox = self.loss_bbox.loss_weight * (
            matched - targets).abs().sum((1, 2))
        loss_iou = self.loss_iou.loss_weight * (1 - giou).sum(1)
        return loss_cls, loss_bbox, loss_iou

    @staticmethod
    def _denoising_targets(gt, dn_meta, device):
        """(1, P) denoising queries with a positive target (in the flattened
        (B * D) queries) and their ground truth: in image b, group g, the
        t-th ground truth is query ``b * D + g * D / groups + t``
        (mmdet's layout)."""
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
            torch.tensor([query_index, gt_index], dtype=torch.long), device)
        return index[:1], index[1:]

    def _avg_factors(self, counts, device):
        """Normalisers of the (classification, box) losses of each part from
        its (positive, negative) counts, as DINOHead computes them:
        averaged over ranks (the classification one if
        ``sync_cls_avg_factor``) and at least 1. One all-reduce and one
        device-to-host copy in distributed training; plain Python
        otherwise."""
        factors = []
        for num_pos, num_neg in zip(counts[::2], counts[1::2]):
            factors += [num_pos + num_neg * self.bg_cls_weight, num_pos]
        if dist.is_available() and dist.is_initialized() and \
                dist.get_world_size() > 1:
            synced = torch.tensor(factors, dtype=torch.float32,
                                  device=device)
            dist.all_reduce(synced.div_(dist.get_world_size()))
            synced = synced.tolist()
            factors = [synced[i] if i % 2 or self.sync_cls_avg_factor
                       else factors[i] for i in range(len(factors))]
        return [max(factor, 1) + AVG_FACTOR_EPS for factor in factors]

    def _predict_by_feat_single(self, cls_score, bbox_pred, img_meta,
                                rescale=True):
        """Top-k detections of one image: DETRHead's, with the boxes
        normalised to the padded canvas (``batch_input_shape``) and every
        scale a Python number (no host-to-device copy per image).

        Args:
            cls_score (Tensor): (Q, C) logits.
            bbox_pred (Tensor): (Q, 4) (cx, cy, w, h) normalised to the
                canvas.
            img_meta (dict): ``img_shape``, ``batch_input_shape``,
                ``scale_factor`` (with ``rescale``).

        Returns:
            InstanceData: ``bboxes`` (k, 4) xyxy in pixels of the image
            (clipped to it; of the original image with ``rescale``),
            ``scores`` (k,), ``labels`` (k,).
        """
        canvas_h, canvas_w = img_meta.get('batch_input_shape',
                                          img_meta['img_shape'])
        img_h, img_w = img_meta['img_shape']
        max_per_img = self.test_cfg.get('max_per_img', len(cls_score))
        scores, indexes = cls_score.sigmoid().view(-1).topk(max_per_img)
        bboxes = cxcywh_to_xyxy(bbox_pred[indexes // self.num_classes])
        scale_w, scale_h = img_meta['scale_factor'] if rescale else (1, 1)
        bboxes[:, 0::2] = (bboxes[:, 0::2] * canvas_w).clamp_(
            min=0, max=img_w) / scale_w
        bboxes[:, 1::2] = (bboxes[:, 1::2] * canvas_h).clamp_(
            min=0, max=img_h) / scale_h
        results = InstanceData()
        results.bboxes = bboxes
        results.scores = scores
        results.labels = indexes % self.num_classes
        return results
