"""RT-DETR head on mmdet's DINOHead."""
from typing import Dict, List, Optional, Tuple

import torch
from mmcv.cnn import build_activation_layer
from mmdet.models.dense_heads import DINOHead
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import ConfigType, InstanceList, OptConfigType
from mmengine.model import BaseModule, bias_init_with_prob, constant_init
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..structures import GroundTruth


@MODELS.register_module()
class RTDETRHead(DINOHead):
    """Head of RT-DETR (Zhao et al., CVPR 2024).

    mmdet's ``DINOHead`` layers (per-layer class ``Linear`` and 3-layer box
    MLP, the last pair scoring the encoder's tokens), forward and
    prediction, with its losses computed for the whole batch at once by
    ``criterion`` (:class:`~rtdetr_zoo.dense_heads.RTDETRCriterion`: the
    matcher and the loss modules, RT-DETR's IoU-aware varifocal loss, L1
    and GIoU by default). The loss dict (``loss_cls``, ``d0.loss_bbox``,
    ``enc_loss_iou``, ``dn_loss_cls``, ...) and its values are mmdet's
    ``DINOHead``'s.

    Boxes are predicted normalised to the padded batch canvas (see
    :class:`~rtdetr_zoo.detectors.RTDETR`); :meth:`_predict_by_feat_single`
    maps them to the image before mmdet's usual scaling, clipping and
    rescaling.

    Under autocast (bf16 inference or ``--amp`` training) the head runs in
    float32: class scores, box regression and refinement, and so the losses
    and the final boxes, keep float32 precision (a bf16 box coordinate
    near 640 px would be rounded to 4 px).

    Args:
        num_classes (int): Object classes.
        criterion (dict): ``MODELS`` config of the criterion.
        embed_dims (int): Width of the decoder. Defaults to 256.
        num_reg_fcs (int): Hidden layers of the box MLP. Defaults to 2.
        num_pred_layer (int): Class and box branches: decoder layers + 1
            (set by the detector).
        mlp_act_cfg (dict): Activation between the box MLP's layers
            (DEIM, Huang et al., CVPR 2025: SiLU, the official ``mlp_act``
            of the encoder's and the decoder layers' box heads). Defaults
            to ReLU.
        class_agnostic_encoder (bool): The encoder's class branch scores one
            class-agnostic "object" score, and ``criterion`` supervises it
            as one class (set by the detector from RT-DETRv2's
            ``query_select_method='agnostic'``). Defaults to False.
        share_pred_layer (bool), as_two_stage (bool): mmdet's, set by the
            detector; RT-DETR's are False and True (one class and box
            branch per decoder layer, plus the encoder's).
        train_cfg (dict, optional): Unused; the matcher is
            ``criterion.matcher``.
        test_cfg (dict): ``max_per_img``. Defaults to 300.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self, num_classes: int, criterion: ConfigType,
                 embed_dims: int = 256, num_reg_fcs: int = 2,
                 num_pred_layer: int = 7,
                 mlp_act_cfg: ConfigType = dict(type='ReLU'),
                 class_agnostic_encoder: bool = False,
                 share_pred_layer: bool = False, as_two_stage: bool = True,
                 train_cfg: OptConfigType = None,
                 test_cfg: ConfigType = dict(max_per_img=300),
                 init_cfg: OptConfigType = None) -> None:
        # DETRHead's constructor would build mmdet's per-image losses and
        # assigner, which the batched criterion replaces; the layers are
        # DeformableDETRHead's.
        BaseModule.__init__(self, init_cfg=init_cfg)
        if train_cfg and 'assigner' in train_cfg:
            raise ValueError(
                'RTDETRHead matches in its criterion: move '
                'model.train_cfg.assigner.match_costs to '
                'model.bbox_head.criterion.matcher.match_costs (with the '
                'batched costs, e.g. BatchedFocalLossCost)')
        if share_pred_layer or not as_two_stage:
            raise ValueError(
                'RTDETRHead has a class and a box branch per decoder layer '
                'plus one for the encoder (share_pred_layer=False, '
                'as_two_stage=True)')
        for key in ('loss_cls', 'loss_bbox', 'loss_iou'):
            if key in criterion:
                raise ValueError(f'criterion.{key}: the criterion takes '
                                 f'losses=dict(name=config, ...)')
        # What DeformableDETRHead's layers, forward and prediction read.
        self.num_classes = self.cls_out_channels = num_classes
        self.embed_dims, self.num_reg_fcs = embed_dims, num_reg_fcs
        self.share_pred_layer, self.as_two_stage = False, True
        self.num_pred_layer = num_pred_layer
        self.mlp_act_cfg = mlp_act_cfg
        self.class_agnostic_encoder = class_agnostic_encoder
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        self.criterion = MODELS.build(
            dict(criterion, class_agnostic_encoder=class_agnostic_encoder))
        self._init_layers()

    def _init_layers(self) -> None:
        super()._init_layers()
        # DeformableDETRHead's box MLPs: Linear, ReLU, ..., Linear.
        for branch in self.reg_branches:
            for index, module in enumerate(branch):
                if isinstance(module, nn.ReLU):
                    branch[index] = build_activation_layer(self.mlp_act_cfg)
        if self.class_agnostic_encoder:
            self.cls_branches[-1] = nn.Linear(self.embed_dims, 1)

    def init_weights(self) -> None:
        """DeformableDETRHead's initialisation, for sigmoid class scores and
        two stages: class biases at a prior probability of 0.01, the last
        box layer at zero."""
        bias_init = bias_init_with_prob(0.01)
        for branch in self.cls_branches:
            nn.init.constant_(branch.bias, bias_init)
        for branch in self.reg_branches:
            constant_init(branch[-1], 0, bias=0)

    def _not_batched(self, *args, **kwargs):
        raise RuntimeError(
            f'{type(self).__name__} computes every loss in one batched pass '
            f'of its criterion (loss_by_feat); mmdet\'s per-image, per-layer '
            f'loss and target methods are not used')

    loss_by_feat_single = get_targets = _get_targets_single = _not_batched
    loss_dn = _loss_dn_single = _not_batched
    get_dn_targets = _get_dn_targets_single = _not_batched

    def forward(self, hidden_states: Tensor,
                references: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """(n, B, Q, d) hidden states and n + 1 references (B, Q, 4) -> class
        logits (n, B, Q, C) and boxes (n, B, Q, 4), in float32."""
        with torch.autocast(hidden_states.device.type, enabled=False):
            return super().forward(hidden_states.float(),
                                   [ref.float() for ref in references])

    def last_layer_predictions(self, hidden_states: Tensor,
                               references: List[Tensor],
                               **kwargs) -> Tuple[Tensor, Tensor]:
        """Logits (B, Q, C) and boxes (B, Q, 4) of the last layer run (the
        exported graph's outputs), from the decoder's outputs."""
        layer = hidden_states.size(0) - 1
        query = hidden_states[layer]
        boxes = (self.reg_branches[layer](query) +
                 inverse_sigmoid(references[layer])).sigmoid()
        return self.cls_branches[layer](query), boxes

    def loss_by_feat(
            self, all_layers_cls_scores: Tensor,
            all_layers_bbox_preds: Tensor, enc_cls_scores: Optional[Tensor],
            enc_bbox_preds: Optional[Tensor],
            batch_gt_instances: InstanceList, batch_img_metas: List[dict],
            dn_meta: Optional[Dict[str, int]],
            batch_gt_instances_ignore: Optional[InstanceList] = None
    ) -> Dict[str, Tensor]:
        """The criterion's losses of a batch.

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
        gt = GroundTruth.from_instances(batch_gt_instances, batch_img_metas)
        cls_scores, bbox_preds, dn_cls_scores, dn_bbox_preds = \
            self.split_outputs(all_layers_cls_scores, all_layers_bbox_preds,
                               dn_meta)
        return self.criterion(cls_scores, bbox_preds, enc_cls_scores,
                              enc_bbox_preds, dn_cls_scores, dn_bbox_preds,
                              dn_meta, gt)

    def _predict_by_feat_single(self, cls_score: Tensor, bbox_pred: Tensor,
                                img_meta: dict,
                                rescale: bool = True) -> InstanceData:
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
        bboxes = bbox_cxcywh_to_xyxy(bbox_pred[indexes // self.num_classes])
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
