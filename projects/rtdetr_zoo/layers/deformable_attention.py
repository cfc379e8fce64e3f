"""Multi-scale deformable attention with a faster CPU path."""
import torch
import torch.nn.functional as F
from mmcv.ops import MultiScaleDeformableAttention


class CPUFastMultiScaleDeformableAttention(MultiScaleDeformableAttention):
    """mmcv's ``MultiScaleDeformableAttention`` (Zhu et al., "Deformable
    DETR", ICLR 2021), same parameters and function, with a faster path for
    CPU tensors.

    mmcv's CPU path (``multi_scale_deformable_attn_pytorch``) projects the
    values to (B, N, heads, d), then copies every level into the
    (B * heads, d, H, W) layout ``grid_sample`` reads: one strided transpose
    copy of the whole memory per decoder layer (and another in the
    backward pass), ~1/3 of the attention's CPU time at 640x640. Here the
    value projection is one batched matmul that writes (B, heads * d, N)
    directly, so each level is a view of it; the levels' samples are weighted
    and summed one level at a time instead of being stacked first.

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

    def forward(self, query, key=None, value=None, identity=None,
                query_pos=None, key_padding_mask=None,
                reference_points=None, spatial_shapes=None,
                level_start_index=None, **kwargs):
        if value is None:
            value = query
        if (value.device.type != 'cpu' or not self.batch_first
                or key_padding_mask is not None
                or reference_points.shape[-1] != 4
                or torch.onnx.is_in_onnx_export()):
            return self.mmcv_forward(
                query, key, value, identity, query_pos, key_padding_mask,
                reference_points, spatial_shapes, level_start_index,
                **kwargs)
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        batch, num_query, _ = query.shape
        heads, levels = self.num_heads, self.num_levels
        points = self.num_points
        value_t = self.project_values(value)
        offsets = self.sampling_offsets(query).view(
            batch, num_query, heads, levels, points, 2)
        weights = self.attention_weights(query).view(
            batch, num_query, heads, levels * points).softmax(-1)
        # (B * heads, Q, L, P)
        weights = weights.transpose(1, 2).reshape(
            batch * heads, num_query, levels, points)
        locations = reference_points[:, :, None, :, None, :2] + \
            offsets / points * reference_points[:, :, None, :, None, 2:] * 0.5
        # grid_sample coordinates in [-1, 1], (B * heads, Q, L, P, 2)
        grids = (2 * locations - 1).transpose(1, 2).flatten(0, 1)
        output = None
        start = 0
        for level, (height, width) in enumerate(spatial_shapes.tolist()):
            level_value = value_t[..., start:start + height * width].unflatten(
                -1, (height, width))
            start += height * width
            # (B * heads, d, Q, P)
            sampled = F.grid_sample(
                level_value, grids[:, :, level].to(level_value.dtype),
                mode='bilinear', padding_mode='zeros', align_corners=False)
            term = (sampled * weights[:, None, :, level].to(
                sampled.dtype)).sum(-1)
            output = term if output is None else output + term
        output = self.output_proj(
            output.view(batch, self.embed_dims, num_query).transpose(1, 2))
        return self.dropout(output) + identity

    def project_values(self, value, key_padding_mask=None):
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

    def mmcv_forward(self, query, *args, **kwargs):
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
