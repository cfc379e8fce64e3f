"""RT-DETR head on mmdet's DINOHead."""
import torch

from mmdet.models.dense_heads import DINOHead
from mmdet.models.losses import QualityFocalLoss
from mmdet.registry import MODELS


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

    def forward(self, hidden_states, references):
        """(n, B, Q, d) hidden states and n + 1 references (B, Q, 4) -> class
        logits (n, B, Q, C) and boxes (n, B, Q, 4), in float32."""
        with torch.autocast(hidden_states.device.type, enabled=False):
            return super().forward(hidden_states.float(),
                                   [ref.float() for ref in references])

    def _predict_by_feat_single(self, cls_score, bbox_pred, img_meta,
                                rescale=True):
        canvas_h, canvas_w = img_meta.get('batch_input_shape',
                                          img_meta['img_shape'])
        img_h, img_w = img_meta['img_shape']
        bbox_pred = bbox_pred * bbox_pred.new_tensor(
            [canvas_w / img_w, canvas_h / img_h] * 2)
        return super()._predict_by_feat_single(cls_score, bbox_pred, img_meta,
                                               rescale)
