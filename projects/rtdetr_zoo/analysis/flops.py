"""Parameters and FLOPs of a config's model (mmengine's jit-trace analyser).

One fused multiply-add counts as one FLOP (the convention of papers'
"FLOPs"/MACs). Part ``'detector'`` traces ``model._forward`` (backbone,
neck, decoder and head outputs, no post-processing) on one pre-processed
random image; part ``'backbone'`` traces the backbone alone.

mmengine has no handle for ``aten::scaled_dot_product_attention`` (used by
MaSA and other attention layers); :data:`FLOP_HANDLES` adds one to each
analyser this module creates (``FlopAnalyzer.set_op_handle``, nothing
global): ``L * S * (E + Ev)`` per batch and head, the two matmuls
``q k^T`` and ``softmax(.) v``; element-wise ops (softmax, masks) are not
counted, as for every other op in mmengine.
"""
from math import prod

import torch.nn as nn
from mmengine.analysis import (ActivationAnalyzer, FlopAnalyzer,
                               parameter_count)
from mmengine.analysis.jit_handles import generic_activation_jit, get_shape
from mmengine.analysis.print_helper import (_format_size,
                                            complexity_stats_table)

from .benchmark import build_model, make_inputs


def sdpa_flop_jit(inputs, outputs):
    """FLOPs (MACs) of ``scaled_dot_product_attention(q, k, v, ...)``."""
    q_shape, k_shape, v_shape = (get_shape(v) for v in inputs[:3])
    batch = prod(q_shape[:-2])
    length, source = q_shape[-2], k_shape[-2]
    return batch * length * source * (q_shape[-1] + v_shape[-1])


# Op handles added to mmengine's defaults, per analyser.
FLOP_HANDLES = {'aten::scaled_dot_product_attention': sdpa_flop_jit}
ACTIVATION_HANDLES = {
    'aten::scaled_dot_product_attention': generic_activation_jit()
}


class DetectorTensorForward(nn.Module):
    """``detector._forward(inputs, samples)`` as a one-tensor module (the
    data samples are fixed), so that it can be traced."""

    def __init__(self, detector, samples):
        super().__init__()
        self.detector = detector
        self.samples = samples

    def forward(self, inputs):
        return self.detector._forward(inputs, self.samples)


def model_complexity(model, inputs, show_table=False):
    """Parameters and FLOPs of ``model(*inputs)``.

    Args:
        model (nn.Module): Model to trace.
        inputs (tuple[Tensor]): Its inputs.
        show_table (bool): Also build the per-module table (a second trace,
            for the activation counts).

    Returns:
        dict: ``params``, ``params_str``, ``flops``, ``flops_str`` and
        ``out_table`` (``''`` without ``show_table``).
    """
    flops = FlopAnalyzer(model, inputs).set_op_handle(**FLOP_HANDLES)
    params = parameter_count(model)['']
    table = ''
    if show_table:
        activations = ActivationAnalyzer(model, inputs).set_op_handle(
            **ACTIVATION_HANDLES)
        table = '\n' + complexity_stats_table(
            flops=flops, activations=activations, show_param_shapes=True)
    total = flops.total()
    return dict(params=params, params_str=_format_size(params), flops=total,
                flops_str=_format_size(total), out_table=table)


def config_complexity(config, part='detector', shape=(640, 640),
                      cfg_options=None, show_table=False):
    """Parameters and FLOPs of ``config``'s detector or backbone on one
    random (H, W) = ``shape`` image.

    Returns:
        dict: :func:`model_complexity`'s entries plus ``input_shape`` (the
        traced tensor's shape).
    """
    model = build_model(config, part, cfg_options)
    inputs, samples = make_inputs(model, part, 1, *shape)
    traced = model if samples is None else DetectorTensorForward(
        model, samples)
    info = model_complexity(traced, (inputs, ), show_table=show_table)
    return dict(info, input_shape=tuple(inputs.shape))
