"""The RT-DETR transformer decoder (Zhao et al., CVPR 2024, Sec. 4.3)."""
import torch
from torch import nn

from mmdet.models.layers import (DeformableDetrTransformerDecoder,
                                 DeformableDetrTransformerDecoderLayer)
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType

from .deformable_attention import (CPUFastMultiScaleDeformableAttention,
                                   fp32_branch)
from .mlp import ActivatedMLP

# Arguments of mmcv's MultiScaleDeformableAttention that every cross-attention
# of the decoder (RT-DETR's, RT-DETRv2's) takes with the same meaning.
SHARED_ATTN_ARGS = ('embed_dims', 'num_heads', 'num_levels', 'dropout',
                    'batch_first')
QUERY_POS_METHODS = ('default', 'as_reg')


@MODELS.register_module()
class RTDETRTransformerDecoder(DeformableDetrTransformerDecoder):
    """Decoder of RT-DETR on mmdet's deformable-DETR decoder layers.

    Each layer is self-attention -> multi-scale deformable cross-attention ->
    FFN, post-norm (mmdet's ``DeformableDetrTransformerDecoderLayer``, its
    cross-attention being :class:`CPUFastMultiScaleDeformableAttention`:
    mmcv's module with a faster CPU path). Differences
    from DINO's decoder, following the official RT-DETR:

    - the query position embedding is ``MLP(4 -> 2d -> d)`` applied directly
      to the (detached) reference box, not to its sine encoding (with
      ``query_pos_method='as_reg'``, DEIM's ``MLP(4 -> d -> d -> d)``, the
      shape of a box-regression head);
    - no final LayerNorm;
    - iterative box refinement ``ref_{l+1} = sigmoid(reg_l(q_l) +
      logit(ref_l))``, the next layer seeing the detached box;
    - in eval mode decoding stops after layer ``eval_idx``.

    The cross-attention is configured by ``layer_cfg.cross_attn_cfg``: no
    ``type`` builds RT-DETR's; ``type='MultiScaleDeformableAttentionV2'``
    (:class:`~rtdetr_zoo.layers.MultiScaleDeformableAttentionV2`) builds
    RT-DETRv2's (points per level, discrete sampling).

    Args:
        num_layers (int): Decoder layers.
        layer_cfg (dict): Config of ``DeformableDetrTransformerDecoderLayer``.
        eval_idx (int): Layer whose prediction is used at inference
            (negative indices count from the end). Defaults to -1.
        query_pos_method (str): ``'default'`` (RT-DETR's 2-layer query
            position MLP) or ``'as_reg'`` (DEIM, Huang et al., CVPR 2025:
            3 layers of width d, official ``query_pos_method: as_reg`` of
            ``engine/deim/rtdetrv2_decoder.py``). Defaults to
            ``'default'``.
        mlp_act_cfg (dict): Activation of the query position MLP (DEIM:
            SiLU, the official ``mlp_act``). Defaults to ReLU.
    """

    def __init__(self, num_layers: int, layer_cfg: ConfigType,
                 eval_idx: int = -1, query_pos_method: str = 'default',
                 mlp_act_cfg: ConfigType = dict(type='ReLU'),
                 init_cfg: OptConfigType = None) -> None:
        if query_pos_method not in QUERY_POS_METHODS:
            raise ValueError(
                f'query_pos_method must be one of {QUERY_POS_METHODS}, got '
                f'{query_pos_method!r}')
        self.query_pos_method = query_pos_method
        self.mlp_act_cfg = mlp_act_cfg
        super().__init__(
            num_layers=num_layers, layer_cfg=layer_cfg, post_norm_cfg=None,
            return_intermediate=True, init_cfg=init_cfg)
        if not -num_layers <= eval_idx < num_layers:
            raise ValueError(
                f'eval_idx {eval_idx} is out of range for {num_layers} '
                f'decoder layers')
        self.eval_idx = eval_idx % num_layers

    #: The class of the decoder layers.
    layer_class = DeformableDetrTransformerDecoderLayer

    def _init_layers(self):
        # mmdet's layer builds mmcv's attention from ``cross_attn_cfg``: it
        # gets the arguments every deformable attention shares, then the
        # configured ``type`` (default: RT-DETR's) takes its place.
        layer_cfg = self.layer_cfg
        attn_cfg = dict(layer_cfg['cross_attn_cfg'])
        attn_type = attn_cfg.pop('type', CPUFastMultiScaleDeformableAttention)
        shared_cfg = dict(layer_cfg, cross_attn_cfg={
            k: v for k, v in attn_cfg.items() if k in SHARED_ATTN_ARGS})
        self.layers = nn.ModuleList(
            self.layer_class(**shared_cfg) for _ in range(self.num_layers))
        self.embed_dims = self.layers[0].embed_dims
        for layer in self.layers:
            layer.cross_attn_cfg = layer_cfg['cross_attn_cfg']
            layer.cross_attn = MODELS.build(dict(attn_cfg, type=attn_type))
        if self.query_pos_method == 'as_reg':
            hidden_dim, num_mlp_layers = self.embed_dims, 3
        else:
            hidden_dim, num_mlp_layers = 2 * self.embed_dims, 2
        self.query_pos_head = ActivatedMLP(4, hidden_dim, self.embed_dims,
                                           num_mlp_layers, self.mlp_act_cfg)

    def forward(self, query, value, reference_points, spatial_shapes,
                level_start_index, reg_branches, self_attn_mask=None,
                **kwargs):
        """Decode the queries.

        Args:
            query (Tensor): Content queries (B, Q, d).
            value (Tensor): Flattened multi-level memory (B, N, d).
            reference_points (Tensor): Initial boxes, normalised
                (cx, cy, w, h) after sigmoid, (B, Q, 4).
            spatial_shapes (Tensor): (L, 2) (h, w) of the memory levels.
            level_start_index (Tensor): (L,) start of each level in ``value``.
            reg_branches (nn.ModuleList): Box-refinement heads, one per layer.
            self_attn_mask (Tensor, optional): (Q, Q) bool mask, True where
                attention is forbidden (denoising groups).

        Returns:
            tuple[Tensor, Tensor]: hidden states (n, B, Q, d) of the ``n``
            layers run (all in training, ``eval_idx + 1`` in eval), and
            references (n + 1, B, Q, 4): the initial boxes followed by each
            layer's refined boxes (not detached, for "look forward twice").
        """
        num_levels = spatial_shapes.size(0)
        hidden_states = []
        references = [reference_points]
        ref_detached = reference_points
        for lid, layer in enumerate(self.layers):
            query = layer(
                query,
                query_pos=self.query_pos_head(ref_detached),
                value=value,
                self_attn_mask=self_attn_mask,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                reference_points=ref_detached[:, :, None].expand(
                    -1, -1, num_levels, -1),
                **kwargs)
            new_ref = (fp32_branch(reg_branches[lid], query) +
                       inverse_sigmoid(ref_detached.float())).sigmoid()
            hidden_states.append(query)
            references.append(new_ref)
            if not self.training and lid == self.eval_idx:
                break
            ref_detached = new_ref.detach()
        return torch.stack(hidden_states), torch.stack(references)
