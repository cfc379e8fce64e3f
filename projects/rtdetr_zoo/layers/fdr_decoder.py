"""D-FINE's decoder: fine-grained distribution refinement (FDR) of the
boxes through the layers (Peng et al., "D-FINE: Redefine Regression Task of
DETRs as Fine-grained Distribution Refinement", ICLR 2025, Sec. 3.1;
official ``TransformerDecoder``, ``TransformerDecoderLayer`` and
``MSDeformableAttention`` of ``engine/deim/dfine_decoder.py``,
ShihuaHuang95/DEIM, the same as Peterande/D-FINE's
``src/zoo/dfine/dfine_decoder.py``)."""
from typing import Dict, Optional

import torch
from mmdet.models.layers import DeformableDetrTransformerDecoderLayer
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType
from torch import Tensor, nn

from .deformable_attention import fp32_branch
from .fdr import (GatedFusion, distance_to_box, distribution_integral,
                  weighting_function)
from .msdeform_attn_v2 import MultiScaleDeformableAttentionV2
from .rtdetr_decoder import RTDETRTransformerDecoder

# The largest float16 value: the official layer clamps before its last norm.
FP16_MAX = 65504.0


@MODELS.register_module()
class FDRDeformableAttention(MultiScaleDeformableAttentionV2):
    """D-FINE's cross-attention: RT-DETRv2's (points per level, offsets
    scaled by the reference box, :class:`MultiScaleDeformableAttentionV2`)
    with neither a value nor an output projection: every head samples its
    slice of the memory itself. Its output is not added to the query (no
    residual): the layer's :class:`~rtdetr_zoo.layers.fdr.GatedFusion`
    combines the two.

    Shapes: ``query`` (B, Q, C), ``value`` (B, N, C), ``reference_points``
    (B, Q, L, 4) (cx, cy, w, h) -> (B, Q, C).
    """

    residual = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.value_proj = nn.Identity()
        self.output_proj = nn.Identity()

    def project_values(self,
                       value: Tensor,
                       key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """(B, N, C) -> (B * heads, C / heads, N), no projection; padding
        (``key_padding_mask`` (B, N), True at padding) zeroed."""
        value_t = value.transpose(1, 2)
        if key_padding_mask is not None:
            value_t = value_t.masked_fill(key_padding_mask[:, None], 0.0)
        return value_t.reshape(value.size(0) * self.num_heads,
                               self.embed_dims // self.num_heads, -1)


@MODELS.register_module()
class FDRDecoderLayer(DeformableDetrTransformerDecoderLayer):
    """A D-FINE decoder layer: self-attention -> norm -> cross-attention ->
    **gate** -> FFN -> norm (post-norm).

    mmdet's deformable-DETR decoder layer with its second norm replaced by
    D-FINE's ``Gate`` (:class:`~rtdetr_zoo.layers.fdr.GatedFusion`,
    ``norms[1]``): ``LayerNorm(g1 * query + g2 * attended)`` instead of
    ``LayerNorm(query + attended)``; the cross-attention
    (:class:`FDRDeformableAttention`) returns the attended values without
    the residual. As the official layer the FFN's output is clamped to the
    float16 range before the last norm.
    """

    def _init_layers(self) -> None:
        super()._init_layers()
        self.norms[1] = GatedFusion(self.embed_dims)

    def forward(self, query: Tensor, key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_pos: Optional[Tensor] = None,
                self_attn_mask: Optional[Tensor] = None,
                cross_attn_mask: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """mmdet's arguments; (B, Q, C) -> (B, Q, C)."""
        query = self.self_attn(
            query=query, key=query, value=query, query_pos=query_pos,
            key_pos=query_pos, attn_mask=self_attn_mask, **kwargs)
        query = self.norms[0](query)
        attended = self.cross_attn(
            query=query, key=key, value=value, query_pos=query_pos,
            key_pos=key_pos, attn_mask=cross_attn_mask,
            key_padding_mask=key_padding_mask, **kwargs)
        query = self.norms[1](query, attended)
        query = self.ffn(query)
        return self.norms[2](query.clamp(min=-FP16_MAX, max=FP16_MAX))


@MODELS.register_module()
class DFINETransformerDecoder(RTDETRTransformerDecoder):
    """The decoder of D-FINE: each layer refines four per-edge probability
    distributions instead of the box (FDR, Sec. 3.1).

    Layer 0's pre-refinement head (``pre_reg_branch``, the official
    ``pre_bbox_head``) refines the selected query boxes once, RT-DETR's way
    (``sigmoid(pre(q_0) + logit(ref))``); these detached boxes are the
    initial boxes every layer's distributions are decoded from. Layer ``l``
    adds its box head's output to the previous layer's corner logits,
    ``corners_l = reg_l(q_l + q_{l-1}.detach()) + corners_{l-1}``, and its
    box is :func:`~rtdetr_zoo.layers.fdr.distance_to_box` of the initial
    box and the distributions' expected offsets under the weighting
    function W(n) (:func:`~rtdetr_zoo.layers.fdr.weighting_function`). The
    next layer samples around that box (detached) and embeds it as its
    query position, clamped to [-10, 10].

    The layers are :class:`FDRDecoderLayer` (the gate after
    cross-attention); the cross-attention defaults to
    :class:`FDRDeformableAttention` with D-FINE's ``num_points [3, 6, 3]``.
    ``up`` and ``reg_scale`` are the official frozen parameters, kept as
    buffers (a checkpoint of another value is refused on load).

    Args:
        num_layers (int): Decoder layers.
        layer_cfg (dict): Config of :class:`FDRDecoderLayer`.
        eval_idx (int): Layer whose prediction is used at inference.
            Defaults to -1.
        reg_max (int): Bins minus one of each distribution. Defaults to 32.
        reg_scale (float): Curvature of W(n) and the box unit (the
            reference size / ``reg_scale``). Defaults to 4 (D-FINE-X: 8).
        up (float): Bound of W(n). Defaults to 0.5.
        mlp_act_cfg (dict): Activation of the query position MLP
            (DEIM-D-FINE: SiLU). Defaults to ReLU.
    """

    layer_class = FDRDecoderLayer

    def __init__(self, num_layers: int, layer_cfg: ConfigType,
                 eval_idx: int = -1, reg_max: int = 32,
                 reg_scale: float = 4.0, up: float = 0.5,
                 mlp_act_cfg: ConfigType = dict(type='ReLU'),
                 init_cfg: OptConfigType = None) -> None:
        layer_cfg = dict(layer_cfg)
        layer_cfg['cross_attn_cfg'] = dict(
            dict(type=FDRDeformableAttention, num_points=[3, 6, 3]),
            **layer_cfg.get('cross_attn_cfg', {}))
        super().__init__(num_layers, layer_cfg, eval_idx=eval_idx,
                         mlp_act_cfg=mlp_act_cfg, init_cfg=init_cfg)
        weighting_function(reg_max, torch.tensor([up]),
                           torch.tensor([reg_scale]))  # checks reg_max
        self.reg_max = reg_max
        self.register_buffer('up', torch.tensor([float(up)]))
        self.register_buffer('reg_scale', torch.tensor([float(reg_scale)]))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Refuse a checkpoint of another ``up`` or ``reg_scale``: its
        distributions would be decoded with another W(n)."""
        for name in ('up', 'reg_scale'):
            saved = state_dict.get(prefix + name)
            ours = getattr(self, name)
            if saved is not None and (
                    saved.numel() != 1 or
                    abs(float(saved) - float(ours)) > 1e-3 * abs(
                        float(ours))):
                raise ValueError(
                    f'{prefix}{name} of the checkpoint is '
                    f'{saved.flatten().tolist()}, this model has '
                    f'{name}={float(ours)}: set the decoder\'s {name} to '
                    f'the checkpoint\'s')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def weighting(self) -> Tensor:
        """(reg_max + 1, ) the bin values W(n), in float32."""
        return weighting_function(self.reg_max, self.up.float(),
                                  self.reg_scale.float())

    def forward(self, query: Tensor, value: Tensor,
                reference_points: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor, reg_branches: nn.ModuleList,
                pre_reg_branch: nn.Module,
                self_attn_mask: Optional[Tensor] = None,
                **kwargs) -> Dict[str, Tensor]:
        """Decode the queries.

        Args:
            query (Tensor): Content queries (B, Q, d).
            value (Tensor): Flattened multi-level memory (B, N, d).
            reference_points (Tensor): Selected boxes, normalised
                (cx, cy, w, h) after sigmoid, (B, Q, 4).
            spatial_shapes (Tensor): (L, 2) (h, w) of the memory levels.
            level_start_index (Tensor): (L,) start of each level.
            reg_branches (nn.ModuleList): Per layer, the head giving the
                corner logits (d -> 4 (reg_max + 1)).
            pre_reg_branch (nn.Module): Layer 0's box head (d -> 4).
            self_attn_mask (Tensor, optional): (Q, Q) bool, True where
                attention is forbidden (denoising groups).

        Returns:
            dict[str, Tensor]: for the ``n`` layers run (all in training,
            ``eval_idx + 1`` in eval): ``hidden_states`` (n, B, Q, d),
            ``bbox_preds`` (n, B, Q, 4) normalised (cx, cy, w, h),
            ``corners`` (n, B, Q, 4 (reg_max + 1)) the distributions'
            logits (edges l, t, r, b); ``initial_boxes`` (B, Q, 4) the
            detached boxes they are decoded from, ``pre_boxes`` (B, Q, 4)
            layer 0's pre-refinement boxes, and ``up``, ``reg_scale`` (1, )
            the weighting function's parameters (for the losses).
        """
        num_levels = spatial_shapes.size(0)
        project = self.weighting()
        reg_scale = self.reg_scale.float()
        hidden_states, boxes, corners = [], [], []
        ref_detached = reference_points
        previous_query = previous_corners = 0
        for lid, layer in enumerate(self.layers):
            query_pos = self.query_pos_head(ref_detached).clamp(
                min=-10, max=10)
            query = layer(
                query,
                query_pos=query_pos,
                value=value,
                self_attn_mask=self_attn_mask,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                reference_points=ref_detached[:, :, None].expand(
                    -1, -1, num_levels, -1),
                **kwargs)
            if lid == 0:
                pre_boxes = (fp32_branch(pre_reg_branch, query) +
                             inverse_sigmoid(ref_detached.float())).sigmoid()
                initial_boxes = pre_boxes.detach()
            layer_corners = fp32_branch(reg_branches[lid],
                                        query + previous_query) + \
                previous_corners
            layer_boxes = distance_to_box(
                initial_boxes, distribution_integral(layer_corners, project),
                reg_scale)
            hidden_states.append(query)
            boxes.append(layer_boxes)
            corners.append(layer_corners)
            if not self.training and lid == self.eval_idx:
                break
            previous_corners = layer_corners
            previous_query = query.detach()
            ref_detached = layer_boxes.detach()
        return dict(hidden_states=torch.stack(hidden_states),
                    bbox_preds=torch.stack(boxes),
                    corners=torch.stack(corners),
                    initial_boxes=initial_boxes, pre_boxes=pre_boxes,
                    up=self.up, reg_scale=self.reg_scale)
