"""Parameters and FLOPs of a config's model (mmengine's jit-trace analyser).

    python tools/analysis/get_flops.py configs/rtdetr_rmt_t.py \
        [--part detector|backbone] [--shape 640 | --shape H W] \
        [--show-table] [--cfg-options k=v ...]

Counts come from ``mmengine.analysis.get_model_complexity_info``: one fused
multiply-add counts as one FLOP (the convention of papers' "FLOPs"/MACs).
``--part detector`` traces ``model._forward`` (backbone, neck, decoder and
head outputs, no post-processing) on one pre-processed random image;
``--part backbone`` traces the backbone alone. mmengine has no handle for
``aten::scaled_dot_product_attention`` (used by MaSA and other attention
layers), so this tool registers one: ``L * S * (E + Ev)`` per batch and
head, the two matmuls ``q k^T`` and ``softmax(.) v``; element-wise ops
(softmax, masks) are not counted, as for every other op in mmengine.
"""
import argparse
from math import prod

import torch.nn as nn
from mmengine.analysis import complexity_analysis, get_model_complexity_info
from mmengine.analysis.jit_handles import generic_activation_jit, get_shape
from mmengine.config import DictAction

# Run as a script, this file's folder is on sys.path.
from benchmark import build_model, input_shape, make_inputs


def sdpa_flop_jit(inputs, outputs):
    """FLOPs (MACs) of ``scaled_dot_product_attention(q, k, v, ...)``."""
    q_shape, k_shape, v_shape = (get_shape(v) for v in inputs[:3])
    batch = prod(q_shape[:-2])
    length, source = q_shape[-2], k_shape[-2]
    return batch * length * source * (q_shape[-1] + v_shape[-1])


complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS.setdefault(
    'aten::scaled_dot_product_attention', sdpa_flop_jit)
complexity_analysis._DEFAULT_SUPPORTED_ACT_OPS.setdefault(
    'aten::scaled_dot_product_attention', generic_activation_jit())


class DetectorTensorForward(nn.Module):
    """``detector._forward(inputs, samples)`` as a one-tensor module (the
    data samples are fixed), so that it can be traced."""

    def __init__(self, detector, samples):
        super().__init__()
        self.detector = detector
        self.samples = samples

    def forward(self, inputs):
        return self.detector._forward(inputs, self.samples)


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('--part', choices=['backbone', 'detector'],
                        default='detector', help='what to analyse')
    parser.add_argument('--shape', type=int, nargs='+', default=[640],
                        help='input size: one value (square) or H W')
    parser.add_argument('--show-table', action='store_true',
                        help='print the per-module table')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args()
    if len(args.shape) not in (1, 2):
        parser.error(f'--shape takes 1 or 2 values, got {args.shape}')
    return args


def main():
    args = parse_args()
    height, width = input_shape(args.shape)
    model = build_model(args.config, args.part, args.cfg_options)
    inputs, samples = make_inputs(model, args.part, 1, height, width)
    traced = model if samples is None else DetectorTensorForward(
        model, samples)
    info = get_model_complexity_info(traced, inputs=(inputs, ),
                                     show_table=args.show_table,
                                     show_arch=False)
    if args.show_table:
        print(info['out_table'])
    split = '=' * 60
    print(f'{split}\nconfig: {args.config} [{args.part}]\n'
          f'input: {height}x{width} image -> tensor '
          f'{"x".join(map(str, inputs.shape))}\n'
          f'params: {info["params"]:,} ({info["params_str"]})\n'
          f'FLOPs: {info["flops"] / 1e9:.2f} G (multiply-adds)\n{split}')


if __name__ == '__main__':
    main()
