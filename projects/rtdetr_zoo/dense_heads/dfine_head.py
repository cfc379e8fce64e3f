"""D-FINE's head on our RT-DETR head (Peng et al., ICLR 2025)."""
import copy
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, InstanceList
from mmengine.model import constant_init
from torch import Tensor, nn

from ..layers.fdr import LocalizationQuality
from ..structures import GroundTruth
from .rtdetr_head import RTDETRHead


@MODELS.register_module()
class DFINEHead(RTDETRHead):
    """The head of D-FINE and DEIM-D-FINE.

    :class:`RTDETRHead`'s class and box branches, with D-FINE's changes
    (official ``DFINETransformer`` of ``engine/deim/dfine_decoder.py``):

    - the decoder layers' box branches give the logits of four per-edge
      distributions, ``4 (reg_max + 1)`` outputs, which
      :class:`~rtdetr_zoo.layers.DFINETransformerDecoder` refines and
      decodes into the boxes (the encoder's box branch still regresses 4
      values);
    - ``pre_reg_branch`` (official ``pre_bbox_head``): layer 0's box head
      before refinement, supervised as the ``pre.`` terms with layer 0's
      class logits;
    - per layer a :class:`~rtdetr_zoo.layers.fdr.LocalizationQuality`
      (LQE) adds a score from the sharpness of the distributions to the
      class logits.

    The criterion (:class:`~rtdetr_zoo.dense_heads.DFINECriterion`) adds
    the fine-grained localisation and the distillation terms.

    Args:
        reg_max (int): Bins minus one of each distribution (the decoder's).
            Defaults to 32.
        lqe_cfg (dict): Arguments of the LQE (``k``, ``hidden_dim``,
            ``num_layers``); its activation is ``mlp_act_cfg``.
        **kwargs: :class:`RTDETRHead`'s arguments.
    """

    def __init__(self, *args, reg_max: int = 32,
                 lqe_cfg: ConfigType = dict(k=4, hidden_dim=64, num_layers=2),
                 **kwargs) -> None:
        self.reg_max = reg_max
        self.lqe_cfg = lqe_cfg
        super().__init__(*args, **kwargs)

    @property
    def num_decoder_layers(self) -> int:
        return self.num_pred_layer - 1

    def _init_layers(self) -> None:
        super()._init_layers()
        self.pre_reg_branch = copy.deepcopy(self.reg_branches[-1])
        for branch in self.reg_branches[:self.num_decoder_layers]:
            branch[-1] = nn.Linear(self.embed_dims, 4 * (self.reg_max + 1))
        self.lqe_layers = nn.ModuleList(
            LocalizationQuality(self.reg_max, act_cfg=self.mlp_act_cfg,
                                **self.lqe_cfg)
            for _ in range(self.num_decoder_layers))

    def init_weights(self) -> None:
        """RT-DETR's initialisation; the pre-refinement head's last layer
        and the LQEs' start at zero too."""
        super().init_weights()
        constant_init(self.pre_reg_branch[-1], 0, bias=0)
        for lqe in self.lqe_layers:
            constant_init(lqe.reg_conf.layers[-1], 0, bias=0)

    def forward(self, hidden_states: Tensor, bbox_preds: Tensor,
                corners: Tensor, **kwargs) -> Tuple[Tensor, Tensor]:
        """Class logits of the decoder's layers, with the LQE.

        Args:
            hidden_states (Tensor): (n, B, Q, d).
            bbox_preds (Tensor): (n, B, Q, 4) the decoder's boxes.
            corners (Tensor): (n, B, Q, 4 (reg_max + 1)).
            **kwargs: the decoder's other outputs (``initial_boxes``,
                ``pre_boxes``, ``up``, ``reg_scale``), which only the loss
                reads; mmdet's ``mode='tensor'`` passes them all.

        Returns:
            tuple[Tensor, Tensor]: logits (n, B, Q, C) and the boxes
            (n, B, Q, 4), in float32.
        """
        with torch.autocast(hidden_states.device.type, enabled=False):
            hidden_states = hidden_states.float()
            logits = [
                self.lqe_layers[layer](self.cls_branches[layer](hidden),
                                       corners[layer].float())
                for layer, hidden in enumerate(hidden_states)]
        return torch.stack(logits), bbox_preds.float()

    def last_layer_predictions(self, hidden_states: Tensor,
                               bbox_preds: Tensor, corners: Tensor,
                               **kwargs) -> Tuple[Tensor, Tensor]:
        """Logits (B, Q, C) and boxes (B, Q, 4) of the last layer run
        (the exported graph's outputs)."""
        layer = hidden_states.size(0) - 1
        logits = self.lqe_layers[layer](
            self.cls_branches[layer](hidden_states[layer]), corners[layer])
        return logits, bbox_preds[layer]

    def loss(self, hidden_states: Tensor, bbox_preds: Tensor,
             corners: Tensor, initial_boxes: Tensor, pre_boxes: Tensor,
             up: Tensor, reg_scale: Tensor, enc_outputs_class: Tensor,
             enc_outputs_coord: Tensor, batch_data_samples: SampleList,
             dn_meta: Optional[Dict[str, int]]) -> Dict[str, Tensor]:
        """The criterion's losses of a batch (the arguments: the decoder's
        outputs, :meth:`DFINETransformerDecoder.forward` (``up``,
        ``reg_scale``: its weighting function), the encoder's
        top-k logits (B, Q, C) and boxes (B, Q, 4), and the denoising
        layout)."""
        batch_gt_instances = [s.gt_instances for s in batch_data_samples]
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        cls_scores, bbox_preds = self(hidden_states, bbox_preds, corners)
        with torch.autocast(hidden_states.device.type, enabled=False):
            pre_scores = self.cls_branches[0](hidden_states[0].float())
        return self.loss_by_feat(
            cls_scores, bbox_preds, corners.float(), initial_boxes.float(),
            pre_scores, pre_boxes.float(), up, reg_scale, enc_outputs_class,
            enc_outputs_coord, batch_gt_instances, batch_img_metas, dn_meta)

    def loss_by_feat(self, cls_scores: Tensor, bbox_preds: Tensor,
                     corners: Tensor, initial_boxes: Tensor,
                     pre_scores: Tensor, pre_boxes: Tensor, up: Tensor,
                     reg_scale: Tensor, enc_cls_scores: Optional[Tensor],
                     enc_bbox_preds: Optional[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     dn_meta: Optional[Dict[str, int]]) -> Dict[str, Tensor]:
        """The criterion's losses; the denoising queries (the first
        ``dn_meta['num_denoising_queries']`` of every tensor's query
        dimension) are split from the matching ones."""
        gt = GroundTruth.from_instances(batch_gt_instances, batch_img_metas)
        num_dn = dn_meta['num_denoising_queries'] if dn_meta else 0

        def split(tensor: Tensor, dim: int) -> Tuple[Tensor, Tensor]:
            return (tensor.narrow(dim, num_dn, tensor.size(dim) - num_dn),
                    tensor.narrow(dim, 0, num_dn) if dn_meta else None)

        parts = [split(cls_scores, 2), split(bbox_preds, 2),
                 split(corners, 2), split(initial_boxes, 1),
                 split(pre_scores, 1), split(pre_boxes, 1)]
        matching = [part[0] for part in parts]
        denoising = [part[1] for part in parts]
        return self.criterion(
            *matching, enc_cls_scores, enc_bbox_preds, *denoising, dn_meta,
            gt, self.reg_max, up.float(), reg_scale.float())

    def predict(self, hidden_states: Tensor, bbox_preds: Tensor,
                corners: Tensor, batch_data_samples: SampleList,
                rescale: bool = True, **kwargs) -> InstanceList:
        """Detections of the last layer run (the decoder stops at
        ``eval_idx``); the other decoder outputs are not used."""
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        with torch.autocast(hidden_states.device.type, enabled=False):
            logits, boxes = self.last_layer_predictions(
                hidden_states.float(), bbox_preds.float(), corners.float())
        return self.predict_by_feat(logits[None], boxes[None],
                                    batch_img_metas=batch_img_metas,
                                    rescale=rescale)
