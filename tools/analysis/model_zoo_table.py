"""Write the model-zoo table (markdown): size, speed and raccoon accuracy.

    python tools/analysis/model_zoo_table.py [--configs CFG ...] \
        [--out docs/model_zoo.md] [--runs-dir work_dirs/convergence] \
        [--shape 640] [--warmup 3] [--iters 10] [--threads N] \
        [--flops-shape 640] [--no-flops] [--no-onnx] [--cfg-options k=v ...]

Without ``--configs`` the zoo's variants are measured
(``rtdetr_zoo.analysis.model_zoo_table.ZOO_CONFIGS``, R18-vd first: the
reference of the ratio columns). For each config (random weights; CPU):

- params (M) and GFLOPs (multiply-adds, mmengine's jit-trace counter, as in
  ``tools/analysis/get_flops.py``) at ``--flops-shape`` (default 640x640);
- CPU latency at batch 1 and ``--shape``: PyTorch eager and ONNX Runtime
  (the end-to-end graph of ``tools/deploy/export_onnx.py``), every deploy
  path applied, all models timed alternately in one run (medians of
  ``--iters`` rounds after ``--warmup``), also as a ratio to the first
  config;
- raccoon mAP, AP50, final training loss and wall time of the config's
  raccoon twin's convergence run in ``--runs-dir``
  (``bash tools/analysis/convergence_runs.sh`` writes them);
- the seed article's figure, where it prints one.

Quick run: ``--configs configs/rtdetr_r18vd_coco.py --shape 320 --iters 2
--warmup 1 --flops-shape 320``. The measurement is
``rtdetr_zoo.analysis.model_zoo_table``.
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import DictAction
from mmengine.logging import MMLogger

from rtdetr_zoo.analysis import input_shape, model_zoo_table
from rtdetr_zoo.analysis.model_zoo_table import ZOO_CONFIGS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--configs', nargs='+', default=None,
                        help='configs to measure, the reference first '
                        '(default: the zoo variants, R18-vd first)')
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
    parser.add_argument('--runs-dir', default=None,
                        help='work dirs of the convergence runs '
                        '(tools/analysis/convergence_runs.sh writes '
                        'work_dirs/convergence)')
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
    args.configs = args.configs or list(ZOO_CONFIGS)
    for config in args.configs:
        if not osp.isfile(config):
            parser.error(f'config file not found: {config}')
    if args.runs_dir and not osp.isdir(args.runs_dir):
        parser.error(f'--runs-dir folder not found: {args.runs_dir}')
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
        runs_dir=args.runs_dir, cfg_options=args.cfg_options)
    return 0


if __name__ == '__main__':
    sys.exit(main())
