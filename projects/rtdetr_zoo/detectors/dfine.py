"""D-FINE on our RT-DETR detector (Peng et al., "D-FINE: Redefine
Regression Task of DETRs as Fine-grained Distribution Refinement", ICLR
2025)."""
from typing import Dict, Optional

from mmdet.registry import MODELS
from torch import Tensor, nn

from ..layers.fdr import GatedFusion
from ..layers.fdr_decoder import DFINETransformerDecoder
from .rtdetr import RTDETR


@MODELS.register_module()
class DFINE(RTDETR):
    """D-FINE and DEIM-D-FINE: :class:`RTDETR` (backbone, hybrid encoder,
    query selection, denoising) with D-FINE's decoder
    (:class:`~rtdetr_zoo.layers.DFINETransformerDecoder`, fine-grained
    distribution refinement) and head
    (:class:`~rtdetr_zoo.dense_heads.DFINEHead`).

    As the official ``DFINETransformer`` a neck output already of the
    decoder width enters the decoder as it is (no input projection).
    """

    decoder_class = DFINETransformerDecoder

    def input_projection(self, in_channels: int) -> nn.Module:
        """Identity for a level of the decoder width, else RT-DETR's 1x1
        conv + BatchNorm."""
        if in_channels == self.embed_dims:
            return nn.Identity()
        return super().input_projection(in_channels)

    def init_weights(self) -> None:
        """RT-DETR's initialisation; the gates start at 0.5 (D-FINE's)."""
        super().init_weights()
        for module in self.decoder.modules():
            if isinstance(module, GatedFusion):
                module.reset_parameters()

    def forward_decoder(self, query: Tensor, memory: Tensor,
                        reference_points: Tensor, spatial_shapes: Tensor,
                        level_start_index: Tensor,
                        dn_mask: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Run the decoder with the head's corner and pre-refinement
        branches; returns the decoder's outputs
        (:meth:`DFINETransformerDecoder.forward`)."""
        outputs = self.decoder(
            query=query, value=memory, reference_points=reference_points,
            spatial_shapes=spatial_shapes, level_start_index=level_start_index,
            reg_branches=self.bbox_head.reg_branches,
            pre_reg_branch=self.bbox_head.pre_reg_branch,
            self_attn_mask=dn_mask)
        outputs['hidden_states'] = self.keep_label_embedding(
            outputs['hidden_states'], query, dn_mask)
        return outputs
