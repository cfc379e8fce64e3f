"""Multi-scale deformable attention (Zhu et al., "Deformable DETR", ICLR
2021) in PyTorch ops, shared by RT-DETR's decoder and RT-DETRv2's."""
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F
from mmcv.ops import MultiScaleDeformableAttention
from torch import Tensor


def fp32_branch(branch: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``branch(x)`` in float32 even under autocast (box regression and
    sampling offsets: a bf16 logit offset would move boxes by up to 1/256
    of their value)."""
    with torch.autocast(x.device.type, enabled=False):
        return branch(x.float())


class CPUFastMultiScaleDeformableAttention(MultiScaleDeformableAttention):
    """mmcv's ``MultiScaleDeformableAttention``, same parameters and
    function, with a faster path for CPU tensors; that path is also the
    whole of RT-DETRv2's attention
    (:class:`~rtdetr_zoo.layers.MultiScaleDeformableAttentionV2`, which
    overrides the sampling hooks below).

    Point ``k`` of head ``h`` on level ``l`` samples the value of level ``l``
    at ``ref_xy + offset * offset_scale / n_l * ref_wh``, with ``ref`` the
    query's reference box (cx, cy, w, h) for that level, ``n_l`` the number
    of points of the level (here ``num_points`` on every level) and
    ``offset_scale`` 0.5 (mmcv's and the official RT-DETR's fixed factor).
    The samples are weighted by a softmax over the L * n points of a head
    and summed.

    mmcv's CPU path (``multi_scale_deformable_attn_pytorch``) projects the
    values to (B, N, heads, d), then copies every level into the
    (B * heads, d, H, W) layout ``grid_sample`` reads: one strided transpose
    copy of the whole memory per decoder layer (and another in the
    backward pass), ~1/3 of the attention's CPU time at 640x640. Here the
    value projection is one batched matmul that writes (B, heads * d, N)
    directly, so each level is a view of it; the levels' samples are weighted
    and summed one level at a time instead of being stacked first. The
    sampling locations are computed in float32, also under autocast.

    CUDA/MLU tensors, key padding masks, 2-d reference points,
    ``batch_first=False`` and ONNX export go to mmcv's implementation (so
    an exported graph has the nodes the INT8 quantizer's scopes were chosen
    on: docs/deploy.md). mmcv's CUDA kernel has float32 and float16 only:
    in bfloat16 (inputs or autocast) that path runs in float32 and casts
    its output back (:meth:`mmcv_forward`).

    Shapes: ``query`` (B, Q, C), ``value`` (B, N, C) with N the sum of the
    levels' H * W, ``reference_points`` (B, Q, L, 4) normalised
    (cx, cy, w, h) -> (B, Q, C).
    """

    #: Scale of the offsets relative to the reference box size.
    offset_scale = 0.5
    #: Whether the output is added to ``identity`` (the query by default).
    residual = True

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                identity: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                reference_points: Optional[Tensor] = None,
                spatial_shapes: Optional[Tensor] = None,
                level_start_index: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """mmcv's arguments; (B, Q, C) with ``batch_first``
        (:meth:`forward_pytorch`)."""
        if value is None:
            value = query
        if self.runs_on_mmcv(value, key_padding_mask, reference_points):
            return self.mmcv_forward(
                query, key, value, identity, query_pos, key_padding_mask,
                reference_points, spatial_shapes, level_start_index,
                **kwargs)
        return self.forward_pytorch(query, value, identity, query_pos,
                                    key_padding_mask, reference_points,
                                    spatial_shapes)

    def runs_on_mmcv(self, value: Tensor, key_padding_mask: Optional[Tensor],
                     reference_points: Tensor) -> bool:
        """Whether these inputs go to mmcv's implementation: CUDA/MLU
        tensors, a key padding mask, 2-d reference points,
        ``batch_first=False`` or ONNX export."""
        return (value.device.type != 'cpu' or not self.batch_first
                or key_padding_mask is not None
                or reference_points.shape[-1] != 4
                or torch.onnx.is_in_onnx_export())

    def points_per_level(self) -> List[int]:
        """Sampling points per head on each level."""
        if isinstance(self.num_points, int):
            return [self.num_points] * self.num_levels
        return list(self.num_points)

    def forward_pytorch(self, query: Tensor, value: Optional[Tensor],
                        identity: Optional[Tensor],
                        query_pos: Optional[Tensor],
                        key_padding_mask: Optional[Tensor],
                        reference_points: Tensor,
                        spatial_shapes: Tensor) -> Tensor:
        """The attention in PyTorch ops, one level at a time.

        Args:
            query (Tensor): (B, Q, C).
            value (Tensor, optional): (B, N, C), default ``query``.
            identity (Tensor, optional): Residual (B, Q, C), default
                ``query`` (none without :attr:`residual`).
            query_pos (Tensor, optional): (B, Q, C) added to ``query``.
            key_padding_mask (Tensor, optional): (B, N) bool, True at
                padding (its values are zeroed).
            reference_points (Tensor): (B, Q, L, 4) normalised
                (cx, cy, w, h).
            spatial_shapes (Tensor): (L, 2) (H, W) of the levels.

        Returns:
            Tensor: (B, Q, C).
        """
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        batch, num_query, _ = query.shape
        value_t = self.project_values(value, key_padding_mask)
        # (B * heads, Q, P, 2) in what :meth:`sample` reads.
        grid = self.sampling_grid(
            self.sampling_locations(query, reference_points),
            value_t.dtype).transpose(1, 2).flatten(0, 1)
        # (B * heads, 1, Q, P)
        weights = self.attention_weights(query).view(
            batch, num_query, self.num_heads, -1).softmax(-1).transpose(
                1, 2).flatten(0, 1)[:, None].to(value_t.dtype)
        output = None
        start, first_point = 0, 0
        for (height, width), points in zip(spatial_shapes.tolist(),
                                           self.points_per_level()):
            level_value = value_t[..., start:start + height * width] \
                .unflatten(-1, (height, width))
            start += height * width
            end_point = first_point + points
            # (B * heads, d, Q, n) weighted and summed over the n points.
            term = (self.sample(level_value,
                                grid[:, :, first_point:end_point]) *
                    weights[..., first_point:end_point]).sum(-1)
            output = term if output is None else output + term
            first_point = end_point
        output = self.dropout(self.output_proj(
            output.view(batch, self.embed_dims, num_query).transpose(1, 2)))
        return output + identity if self.residual else output

    def sampling_locations(self, query: Tensor,
                           reference_points: Tensor) -> Tensor:
        """Normalised (x, y) sampling locations
        ``ref_xy + offset * offset_scale / n_l * ref_wh``, in float32 also
        under autocast.

        With the same number of points on every level each level's box is
        broadcast over its points; otherwise (RT-DETRv2) each point takes
        its level's box by index (the ``point_level`` buffer) and its
        ``1 / n_l`` from the ``num_points_scale`` buffer.

        Args:
            query (Tensor): (B, Q, C), position embedding added.
            reference_points (Tensor): (B, Q, L, 4) (cx, cy, w, h).

        Returns:
            Tensor: (B, Q, heads, P, 2), P = sum of the points per level,
            laid out level by level.

        Raises:
            ValueError: ``reference_points`` are not boxes (B, Q, L, 4).
        """
        if reference_points.shape[-1] != 4:
            raise ValueError(
                f'{type(self).__name__} takes reference boxes (B, Q, L, 4), '
                f'got reference points of shape '
                f'{tuple(reference_points.shape)}')
        batch, num_query, _ = query.shape
        offsets = fp32_branch(self.sampling_offsets, query)
        boxes = reference_points.float()
        points = self.points_per_level()
        if len(set(points)) == 1:
            # (B, Q, heads, L, n, 2)
            offsets = offsets.view(batch, num_query, self.num_heads,
                                   len(points), points[0], 2)
            boxes = boxes[:, :, None, :, None]
            scale = self.offset_scale / points[0]
        else:
            # (B, Q, heads, P, 2)
            offsets = offsets.view(batch, num_query, self.num_heads, -1, 2)
            boxes = boxes[:, :, None, self.point_level]
            scale = self.num_points_scale[:, None] * self.offset_scale
        locations = boxes[..., :2] + offsets * scale * boxes[..., 2:]
        return locations.view(batch, num_query, self.num_heads, -1, 2)

    def sampling_grid(self, locations: Tensor, dtype: torch.dtype) -> Tensor:
        """Sampling locations (any shape (..., 2), normalised to [0, 1]) as
        :meth:`sample` reads them: ``grid_sample`` coordinates in [-1, 1],
        in the value dtype."""
        return (2 * locations - 1).to(dtype)

    def sample(self, level_value: Tensor, grid: Tensor) -> Tensor:
        """Values of one level at the sampling points, bilinearly
        (``align_corners=False``, zero padding).

        Args:
            level_value (Tensor): (B * heads, d, H, W).
            grid (Tensor): (B * heads, Q, n, 2) from :meth:`sampling_grid`.

        Returns:
            Tensor: (B * heads, d, Q, n).
        """
        return F.grid_sample(level_value, grid, mode='bilinear',
                             padding_mode='zeros', align_corners=False)

    def project_values(self,
                       value: Tensor,
                       key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """The value projection in the layout ``grid_sample`` reads:
        (B, N, C) -> (B * heads, C / heads, N), padding (``key_padding_mask``
        (B, N), True at padding) zeroed.

        (B, C, N) = W (C, C) @ value^T (B, C, N) + b: a transposed operand
        for the matmul instead of a transpose copy, so each level is a view.
        In ONNX export it is the ``value_proj`` module followed by a
        transpose: a MatMul with its weight as a constant, named
        ``.../value_proj/MatMul``, which the INT8 quantizer's default scopes
        select and quantize per channel (``deploy/quantize.py``).
        """
        batch = value.size(0)
        if torch.onnx.is_in_onnx_export():
            value_t = self.value_proj(value).transpose(1, 2)
        else:
            weight, bias = self.value_proj.weight, self.value_proj.bias
            value_t = torch.baddbmm(
                bias[None, :, None].to(value.dtype),
                weight.to(value.dtype).expand(batch, -1, -1),
                value.transpose(1, 2))
        if key_padding_mask is not None:
            value_t = value_t.masked_fill(key_padding_mask[:, None], 0.0)
        return value_t.view(batch * self.num_heads,
                            self.embed_dims // self.num_heads, -1)

    def mmcv_forward(self, query: Tensor, *args, **kwargs) -> Tensor:
        """mmcv's forward (same arguments), in float32 where it would run in
        bfloat16: mmcv's ``ms_deform_attn_forward_cuda`` is not implemented
        for bfloat16. The output has the dtype the block produces on the
        other paths (bfloat16 output projection plus the residual
        ``query``)."""
        device_type = query.device.type
        bf16_autocast = torch.is_autocast_enabled(device_type) and \
            torch.get_autocast_dtype(device_type) == torch.bfloat16
        tensors = [query] + [a for a in args if torch.is_tensor(a)]
        if not bf16_autocast and all(t.dtype != torch.bfloat16
                                     for t in tensors):
            return super().forward(query, *args, **kwargs)
        with torch.autocast(device_type, enabled=False):
            output = super().forward(*[
                a.float() if torch.is_tensor(a) and a.is_floating_point()
                else a for a in (query, ) + args], **kwargs)
        return output.to(torch.promote_types(torch.bfloat16, query.dtype))
