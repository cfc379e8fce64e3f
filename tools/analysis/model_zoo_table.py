"""Write the README's model-zoo table (markdown) for a set of configs.

    python tools/analysis/model_zoo_table.py [--configs CFG ...] \
        [--out docs/model_zoo.md] [--shape 640] [--warmup 3] [--iters 10] \
        [--threads N] [--flops-shape 640] [--no-flops] [--no-onnx] \
        [--checkpoint CONFIG=CKPT ...] [--cfg-options k=v ...]

Without ``--configs`` every top-level config ``configs/*.py`` is measured.
For each config (random weights; CPU):

- params (M) and GFLOPs (multiply-adds, mmengine's jit-trace counter, as in
  ``tools/analysis/get_flops.py``) at ``--flops-shape`` (default 640x640),
  of the model as the config builds it (training-time structure, the
  convention of papers);
- CPU latency, median over ``--iters`` runs after ``--warmup``, at batch 1
  and ``--shape``: PyTorch eager (``model.predict`` on a pre-processed
  batch, ``torch.no_grad``) and ONNX Runtime (the end-to-end graph of
  ``tools/deploy/export_onnx.py``), both with every deploy path applied
  (RepVGG fusion, RIFormer re-parameterisation) and the same thread count;
- mAP (COCO bbox mAP on the config's own test set, raccoon val for the
  ``*_raccoon`` configs) where ``--checkpoint CONFIG=CKPT`` is given.

Quick run: ``--configs configs/rtdetr_r18vd_coco.py --shape 320 --iters 2
--warmup 1 --flops-shape 320``. The measurement is
``rtdetr_zoo.analysis.model_zoo_table``.
"""
import argparse
import glob
import os.path as osp
import sys

import torch
from mmengine.config import DictAction
from mmengine.logging import MMLogger

from rtdetr_zoo.analysis import input_shape, model_zoo_table


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--configs', nargs='+', default=None,
                        help='configs to measure (default: configs/*.py)')
    parser.add_argument('--out', default='docs/model_zoo.md',
                        help='markdown file to write')
    parser.add_argument('--shape', type=int, nargs='+', default=[640],
                        help='latency input size: S or H W')
    parser.add_argument('--flops-shape', type=int, nargs='+', default=[640],
                        help='FLOPs input size: S or H W')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed runs per backend')
    parser.add_argument('--iters', type=int, default=10,
                        help='timed runs per backend')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads of both backends (default: torch '
                        'default)')
    parser.add_argument('--no-flops', action='store_true',
                        help='skip the FLOPs count')
    parser.add_argument('--no-onnx', action='store_true',
                        help='skip the ONNX Runtime latency')
    parser.add_argument('--checkpoint', action='append', default=[],
                        metavar='CONFIG=CKPT',
                        help='evaluate CKPT with CONFIG for the mAP column '
                        '(repeatable)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of every config, key=value')
    args = parser.parse_args(argv)
    for name in ('shape', 'flops_shape'):
        value = getattr(args, name)
        if len(value) not in (1, 2) or min(value) < 32:
            parser.error(f'--{name.replace("_", "-")} takes 1 or 2 values '
                         f'>= 32, got {value}')
    if args.iters < 1 or args.warmup < 0:
        parser.error('--iters must be >= 1 and --warmup >= 0')
    args.configs = args.configs or sorted(glob.glob('configs/*.py'))
    if not args.configs:
        parser.error('no configs given and none found in configs/*.py')
    for config in args.configs:
        if not osp.isfile(config):
            parser.error(f'config file not found: {config}')
    args.checkpoints = {}
    for item in args.checkpoint:
        config, sep, ckpt = item.partition('=')
        if not sep or not config or not ckpt:
            parser.error(f'--checkpoint takes CONFIG=CKPT, got {item!r}')
        if not osp.isfile(ckpt):
            parser.error(f'checkpoint file not found: {ckpt}')
        if osp.normpath(config) not in map(osp.normpath, args.configs):
            parser.error(f'--checkpoint {item!r}: {config} is not one of '
                         f'the measured configs')
        args.checkpoints[osp.normpath(config)] = ckpt
    return args


def main(argv=None):
    args = parse_args(argv)
    logger = MMLogger.get_instance('model_zoo_table', log_level='INFO')
    if args.threads:
        torch.set_num_threads(args.threads)
    model_zoo_table(
        args.configs, args.out, logger, shape=input_shape(args.shape),
        flops_shape=input_shape(args.flops_shape), warmup=args.warmup,
        iters=args.iters, flops=not args.no_flops, onnx=not args.no_onnx,
        checkpoints=args.checkpoints, cfg_options=args.cfg_options)
    return 0


if __name__ == '__main__':
    sys.exit(main())
