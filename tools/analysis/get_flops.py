"""Parameters and FLOPs of a config's model (mmengine's jit-trace analyser).

    python tools/analysis/get_flops.py configs/rtdetr_rmt_t.py \
        [--part detector|backbone] [--shape 640 | --shape H W] \
        [--show-table] [--cfg-options k=v ...]

Counts come from mmengine's ``FlopAnalyzer``: one fused multiply-add counts
as one FLOP (the convention of papers' "FLOPs"/MACs). ``--part detector``
traces ``model._forward`` (backbone, neck, decoder and head outputs, no
post-processing) on one pre-processed random image; ``--part backbone``
traces the backbone alone. mmengine has no handle for
``aten::scaled_dot_product_attention`` (used by MaSA and other attention
layers), so one is added: ``L * S * (E + Ev)`` per batch and head, the two
matmuls ``q k^T`` and ``softmax(.) v``; element-wise ops (softmax, masks)
are not counted, as for every other op in mmengine. The count is
``rtdetr_zoo.analysis.config_complexity``.
"""
import argparse
import os.path as osp

from mmengine.config import DictAction

from rtdetr_zoo.analysis import config_complexity, input_shape


def parse_args() -> argparse.Namespace:
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
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    return args


def main() -> None:
    args = parse_args()
    height, width = input_shape(args.shape)
    info = config_complexity(args.config, args.part, (height, width),
                             args.cfg_options, show_table=args.show_table)
    if args.show_table:
        print(info['out_table'])
    split = '=' * 60
    print(f'{split}\nconfig: {args.config} [{args.part}]\n'
          f'input: {height}x{width} image -> tensor '
          f'{"x".join(map(str, info["input_shape"]))}\n'
          f'params: {info["params"]:,} ({info["params_str"]})\n'
          f'FLOPs: {info["flops"] / 1e9:.2f} G (multiply-adds)\n{split}')


if __name__ == '__main__':
    main()
