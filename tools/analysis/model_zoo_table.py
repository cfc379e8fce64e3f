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
--warmup 1 --flops-shape 320``.
"""
import argparse
import glob
import os.path as osp
import sys
import tempfile

import torch
from mmengine.analysis import get_model_complexity_info
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.runner import Runner

# Run as a script, this file's folder is on sys.path; get_flops registers
# the FLOP handle of scaled_dot_product_attention on import.
from benchmark import BACKENDS, build_model, make_inputs, run_benchmark
from get_flops import DetectorTensorForward

from rtdetr_zoo.deploy import switch_to_deploy

COLUMNS = ('config', 'backbone', 'params (M)', 'GFLOPs', 'eager (ms)',
           'ORT (ms)', 'ORT speed-up', 'mAP')


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


def square(shape):
    return (shape[0], shape[0]) if len(shape) == 1 else tuple(shape)


def count_complexity(config, shape, cfg_options):
    """(params, FLOPs) of ``config``'s detector at ``shape`` (H, W)."""
    model = build_model(config, 'detector', cfg_options)
    inputs, samples = make_inputs(model, 'detector', 1, *shape)
    info = get_model_complexity_info(
        DetectorTensorForward(model, samples), inputs=(inputs, ),
        show_table=False, show_arch=False)
    return info['params'], info['flops']


def measure_latency(config, shape, cfg_options, backends, warmup, iters,
                    logger):
    """Median latency (ms) per backend at batch 1, deploy paths applied."""
    model = build_model(config, 'detector', cfg_options)
    switch_to_deploy(model)
    inputs, samples = make_inputs(model, 'detector', 1, *shape)
    latency = {}
    for backend in backends:
        runner = BACKENDS[backend](model, inputs, samples)
        stats = run_benchmark(runner, warmup, iters, 1, logger)
        latency[backend] = stats['median_ms']
    return latency


def evaluate_map(config, checkpoint, cfg_options):
    """COCO bbox mAP of ``checkpoint`` on ``config``'s test set."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    with tempfile.TemporaryDirectory() as work_dir:
        cfg.work_dir = work_dir
        cfg.load_from = checkpoint
        metrics = Runner.from_cfg(cfg).test()
    key = next((k for k in metrics if k.endswith('bbox_mAP')), None)
    if key is None:
        raise KeyError(f'the evaluator of {config} returned no bbox_mAP '
                       f'(got {sorted(metrics)})')
    return metrics[key]


def backbone_name(config):
    backbone = Config.fromfile(config).model.backbone
    for key in ('depth', 'arch', 'variant', 'model_name'):
        if key in backbone:
            return f'{backbone["type"]}-{backbone[key]}'
    return backbone['type']


def format_row(row):
    def num(value, fmt):
        return '–' if value is None else format(value, fmt)

    speedup = None
    if row['eager'] is not None and row['ort'] is not None:
        speedup = row['eager'] / row['ort']
    return '| ' + ' | '.join([
        f'`{osp.basename(row["config"])}`', row['backbone'],
        num(row['params'] and row['params'] / 1e6, '.2f'),
        num(row['flops'] and row['flops'] / 1e9, '.1f'),
        num(row['eager'], '.1f'), num(row['ort'], '.1f'),
        '–' if speedup is None else f'{speedup:.2f}x',
        num(row['map'] and 100 * row['map'], '.1f')
    ]) + ' |'


def render(rows, args):
    height, width = square(args.shape)
    fh, fw = square(args.flops_shape)
    threads = args.threads or torch.get_num_threads()
    lines = [
        '| ' + ' | '.join(COLUMNS) + ' |',
        '|' + '---|' * len(COLUMNS),
        *(format_row(row) for row in rows), '',
        f'Params and GFLOPs (multiply-adds, mmengine counter) at {fh}x{fw} '
        f'for the model as configured; CPU latency = median of '
        f'{args.iters} runs (after {args.warmup} warm-up), batch 1, '
        f'{height}x{width}, {threads} thread(s), deploy paths applied; '
        f'eager = PyTorch `model.predict`, ORT = ONNX Runtime on the '
        f'end-to-end graph of `tools/deploy/export_onnx.py`; mAP = COCO '
        f'bbox mAP (%) on the config\'s test set, only where a checkpoint '
        f'was given. Random weights for speed and size.'
    ]
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = parse_args(argv)
    logger = MMLogger.get_instance('model_zoo_table', log_level='INFO')
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = ['pytorch'] + ([] if args.no_onnx else ['onnxruntime'])
    rows = []
    for index, config in enumerate(args.configs):
        logger.info(f'[{index + 1}/{len(args.configs)}] {config}')
        row = dict(config=config, backbone=backbone_name(config),
                   params=None, flops=None, map=None)
        if not args.no_flops:
            row['params'], row['flops'] = count_complexity(
                config, square(args.flops_shape), args.cfg_options)
        else:
            model = build_model(config, 'detector', args.cfg_options)
            row['params'] = sum(p.numel() for p in model.parameters())
        latency = measure_latency(config, square(args.shape),
                                  args.cfg_options, backends, args.warmup,
                                  args.iters, logger)
        row['eager'] = latency['pytorch']
        row['ort'] = latency.get('onnxruntime')
        checkpoint = args.checkpoints.get(osp.normpath(config))
        if checkpoint:
            row['map'] = evaluate_map(config, checkpoint, args.cfg_options)
        rows.append(row)
        logger.info(format_row(row))
    table = render(rows, args)
    out_dir = osp.dirname(osp.abspath(args.out))
    if not osp.isdir(out_dir):
        raise FileNotFoundError(f'--out folder does not exist: {out_dir}')
    with open(args.out, 'w') as f:
        f.write(table)
    logger.info(f'wrote {args.out}:\n{table}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
