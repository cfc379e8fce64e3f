"""Write the model-zoo table (markdown): size, speed and raccoon accuracy.

    python tools/analysis/model_zoo_table.py [--configs CFG ...] \
        [--out docs/model_zoo.md] [--runs-dir work_dirs/convergence] \
        [--shape 640] [--warmup 3] [--iters 10] [--threads N] \
        [--flops-shape 640] [--no-flops] [--no-onnx] [--cfg-options k=v ...]

Without ``--configs`` the zoo's variants are measured (:data:`ZOO_CONFIGS`,
R18-vd first: the reference of the ratio columns). For each config (random
weights; CPU), :func:`model_zoo_table` measures:

- params (M) and GFLOPs (multiply-adds, mmengine's jit-trace counter,
  :func:`rtdetr_zoo.analysis.config_complexity`, as in
  ``tools/analysis/get_flops.py``) at ``--flops-shape`` (default 640x640),
  of the model as the config builds it (training-time structure, the
  convention of papers);
- CPU latency at batch 1 and ``--shape``: PyTorch eager (``model.predict``
  on a pre-processed batch, ``torch.no_grad``) and ONNX Runtime (the
  end-to-end graph of ``tools/deploy/export_onnx.py``), every deploy path
  applied (RepVGG fusion, RIFormer re-parameterisation), the same thread
  count. All models are built first and then timed **alternately** (config
  1 eager, config 1 ORT, config 2 eager, ...; ``--iters`` rounds after
  ``--warmup``), so that a change of machine load affects every row alike;
  medians, and each median as a ratio to the first config's;
- from ``--runs-dir``, where the convergence runs of
  ``tools/analysis/convergence_runs.sh`` wrote their work dirs: the raccoon
  validation mAP and AP50 of every evaluation, the mean training loss of
  the first and the last epoch, the epochs and the run's wall time, for the
  config's raccoon twin (:func:`raccoon_twin`);
- the figure the blog post the variant comes from prints, where it prints
  one (:data:`BLOG_FIGURES`).

The table replaces the text between :data:`MARKERS` of ``--out`` (the rest
of a hand-written page is kept), or the whole file when it has none.

Quick run: ``--configs configs/rtdetr_r18vd_coco.py --shape 320 --iters 2
--warmup 1 --flops-shape 320``.
"""
import argparse
import glob
import json
import logging
import os.path as osp
import re
import statistics
import sys
import time
from datetime import datetime
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import DictAction
from mmengine.logging import MMLogger

from rtdetr_zoo.analysis import (BACKENDS, build_model, config_complexity,
                                 input_shape, make_inputs, time_alternately,
                                 timed)
from rtdetr_zoo.apis import load_config

COLUMNS = ('config', 'backbone', 'params (M)', 'GFLOPs', 'eager (ms)',
           'ORT (ms)', 'eager vs ref', 'ORT vs ref', 'raccoon mAP',
           'raccoon AP50', 'train loss', 'run', 'blog figure')
# The columns of the convergence runs, left out of a table made without
# ``--runs-dir``.
RUN_COLUMNS = ('raccoon mAP', 'raccoon AP50', 'train loss', 'run')

# What the Ultralytics-based blog posts the variants come from (each
# variant's page in docs/ names its post) print for a variant: parameter
# counts of the whole 1-class model (Ultralytics GFLOPs count 2 per
# multiply-add) or of the backbone. None prints an accuracy.
BLOG_FIGURES = {
    'rtdetr_mnv4_conv_s_bifpn.py':
    'rtdetr-MobileNetv4-BiFPN nc=1: 19,463,904 params, 97.2 GFLOPs',
    'rtdetr_dysample.py':
    'rtdetr-l-DySample nc=1: 32,824,579 params, 108.0 GFLOPs',
    'rtdetr_rmt_t.py': 'RMT-T backbone: 12,678,176 params',
}
# The variants with a raccoon twin (convergence run), R18-vd first (the
# reference), then the larger HGNetv2-L pair.
ZOO_CONFIGS = (
    'configs/rtdetr_r18vd_coco.py', 'configs/rtdetr_r18vd_dysample.py',
    'configs/rtdetr_mnv4_conv_s_bifpn.py', 'configs/rtdetr_riformer_s12.py',
    'configs/rtdetr_rmt_t.py', 'configs/rtdetr_bhvit.py',
    'configs/rtdetr_hgnetv2_l_coco.py', 'configs/rtdetr_dysample.py')
# Where the table goes in a hand-written ``out`` (e.g. docs/model_zoo.md):
# the text between the markers is replaced, the rest kept.
MARKERS = ('<!-- model_zoo_table: start -->', '<!-- model_zoo_table: end -->')
LOG_TIME = re.compile(r'^(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2})')


def shown_columns(with_runs: bool) -> List[str]:
    """:data:`COLUMNS`, without the :data:`RUN_COLUMNS` unless
    ``with_runs``."""
    return [column for column in COLUMNS
            if with_runs or column not in RUN_COLUMNS]


def raccoon_twin(config: str) -> str:
    """``configs/rtdetr_x_coco.py`` / ``configs/rtdetr_x.py`` ->
    ``rtdetr_x_raccoon`` (the name of the raccoon config and its run)."""
    name = osp.splitext(osp.basename(config))[0]
    if name.endswith('_raccoon'):
        return name
    return re.sub(r'_coco$', '', name) + '_raccoon'


def read_convergence_run(work_dir: str) -> Optional[dict]:
    """Results of a ``tools/train.py`` run in ``work_dir`` (its latest
    timestamped folder): ``evals`` (``(epoch, mAP, AP50)`` of every
    evaluation), ``map``, ``ap50`` and ``epoch`` of the last one,
    ``first_loss`` / ``loss`` (mean logged training loss of the first / last
    epoch) and ``minutes`` (first to last log line); ``None`` when there is
    no finished evaluation."""
    runs = sorted(glob.glob(osp.join(work_dir, '2*', 'vis_data',
                                     'scalars.json')))
    if not runs:
        return None
    with open(runs[-1]) as f:
        records = [json.loads(line) for line in f if line.strip()]
    evals = [r for r in records if 'coco/bbox_mAP' in r]
    train = [r for r in records if 'loss' in r and 'epoch' in r]
    if not evals or not train:
        return None
    last_epoch = train[-1]['epoch']
    logs = glob.glob(osp.join(osp.dirname(osp.dirname(runs[-1])), '*.log'))
    stamps = []
    if logs:
        with open(logs[0]) as f:
            stamps = [m.group(1) for m in map(LOG_TIME.match, f) if m]
    minutes = None
    if len(stamps) >= 2:
        first, last = (datetime.strptime(t, '%Y/%m/%d %H:%M:%S')
                       for t in (stamps[0], stamps[-1]))
        minutes = (last - first).total_seconds() / 60
    return dict(
        evals=[(r['step'], r['coco/bbox_mAP'], r['coco/bbox_mAP_50'])
               for r in evals],
        map=evals[-1]['coco/bbox_mAP'], ap50=evals[-1]['coco/bbox_mAP_50'],
        epoch=evals[-1]['step'],
        first_loss=statistics.fmean(r['loss'] for r in train
                                    if r['epoch'] == train[0]['epoch']),
        loss=statistics.fmean(r['loss'] for r in train
                              if r['epoch'] == last_epoch),
        minutes=minutes)


def measure_latency(configs: Sequence[str], shape: Tuple[int, int],
                    cfg_options: Optional[dict], backends: Sequence[str],
                    warmup: int, iters: int,
                    logger: logging.Logger) -> Dict[str, Dict[str, float]]:
    """Median latency (ms) of every config and backend at batch 1 and
    (H, W) = ``shape``, deploy paths applied, runs alternating over all
    (config, backend) pairs; ``{config: {backend: ms}}``."""
    # deploy/ imports onnx: loaded only when the table is measured.
    from rtdetr_zoo.deploy import switch_to_deploy

    def name(config, backend):
        return f'{osp.basename(config)} {backend}'

    calls = {}
    for config in configs:
        model = build_model(config, 'detector', cfg_options)
        switch_to_deploy(model)
        inputs, samples = make_inputs(model, 'detector', 1, *shape)
        for backend in backends:
            calls[name(config, backend)] = timed(
                BACKENDS[backend](model, inputs, samples))
    times = time_alternately(calls, warmup, iters, logger)
    return {
        config: {
            backend: statistics.median(times[name(config, backend)]) * 1000
            for backend in backends
        }
        for config in configs
    }


def backbone_name(config: str) -> str:
    """``Type-arch`` of ``config``'s backbone, e.g. ``ResNetVd-18``."""
    backbone = load_config(config).model.backbone
    for key in ('depth', 'arch', 'variant', 'model_name'):
        if key in backbone:
            return f'{backbone["type"]}-{backbone[key]}'
    return backbone['type']


def format_row(row: dict, reference: dict, with_runs: bool = True) -> str:
    """One markdown row of :data:`COLUMNS` from a measured ``row`` dict
    (``config``, ``backbone``, ``params``, ``flops``, ``eager``, ``ort``,
    ``run``; ``None`` = not measured, shown as an en dash) and the
    reference row (for the ratio columns); without the
    :data:`RUN_COLUMNS` unless ``with_runs``."""

    def num(value, fmt):
        return '–' if value is None else format(value, fmt)

    def ratio(key):
        if row[key] is None or reference[key] is None:
            return '–'
        return f'{row[key] / reference[key]:.2f}x'

    run = row['run'] or {}
    done = maps = ap50s = losses = '–'
    if run:
        done = f'{run["epoch"]} ep' + (
            f', {run["minutes"]:.0f} min' if run['minutes'] else '')
        maps = ' / '.join(f'{100 * m:.1f}' for _, m, _ in run['evals'])
        ap50s = ' / '.join(f'{100 * a:.1f}' for _, _, a in run['evals'])
        losses = f'{run["first_loss"]:.1f} → {run["loss"]:.1f}'
    cells = [
        f'`{osp.basename(row["config"])}`', row['backbone'],
        num(row['params'] and row['params'] / 1e6, '.2f'),
        num(row['flops'] and row['flops'] / 1e9, '.1f'),
        num(row['eager'], '.0f'), num(row['ort'], '.0f'), ratio('eager'),
        ratio('ort'),
        maps, ap50s, losses, done,
        BLOG_FIGURES.get(osp.basename(row['config']), '–')
    ]
    by_column = dict(zip(COLUMNS, cells))
    return '| ' + ' | '.join(
        by_column[column] for column in shown_columns(with_runs)) + ' |'


def render(rows: List[dict], shape: Tuple[int, int],
           flops_shape: Tuple[int, int], warmup: int, iters: int,
           threads: int, runs_dir: Optional[str], seconds: float) -> str:
    """The markdown table of ``rows`` (the first is the reference) and its
    footnote."""
    height, width = shape
    fh, fw = flops_shape
    columns = shown_columns(bool(runs_dir))
    runs = (
        f'Raccoon columns: the run of the config\'s raccoon twin in '
        f'`{runs_dir}` (`bash tools/analysis/convergence_runs.sh '
        f'configs/<twin>.py`): COCO bbox mAP / AP50 (%) of every '
        f'evaluation (epoch 5 / epoch 10) on the 40 validation images, mean '
        f'training loss of the first and the last epoch, epochs and wall '
        f'time. ') if runs_dir else ''
    lines = [
        '| ' + ' | '.join(columns) + ' |',
        '|' + '---|' * len(columns),
        *(format_row(row, rows[0], bool(runs_dir)) for row in rows), '',
        f'Params and GFLOPs (multiply-adds, mmengine counter) at {fh}x{fw} '
        f'for the model as configured (80 classes, random weights). CPU '
        f'latency: median of {iters} rounds (after {warmup} warm-up) in '
        f'which every model ran once per backend, alternating, batch 1, '
        f'{height}x{width}, {threads} thread(s), deploy paths applied; '
        f'eager = PyTorch `model.predict`, ORT = ONNX Runtime on the '
        f'end-to-end graph of `tools/deploy/export_onnx.py`; "vs ref" = '
        f'median / the median of `{osp.basename(rows[0]["config"])}`. '
        f'{runs}Table generated in {seconds / 60:.1f} min.'
    ]
    return '\n'.join(lines) + '\n'


def model_zoo_table(configs: Sequence[str],
                    out: str,
                    logger: logging.Logger,
                    shape: Tuple[int, int] = (640, 640),
                    flops_shape: Tuple[int, int] = (640, 640),
                    warmup: int = 3,
                    iters: int = 10,
                    flops: bool = True,
                    onnx: bool = True,
                    runs_dir: Optional[str] = None,
                    cfg_options: Optional[dict] = None) -> str:
    """Measure ``configs`` (see module doc) and write the table to ``out``.

    Args:
        configs (list[str]): Config files; the first is the reference of
            the ratio columns.
        out (str): Markdown file to write (only between :data:`MARKERS`
            when it has them); its folder must exist.
        logger (logging.Logger): Where progress and each row go.
        shape, flops_shape (tuple[int, int]): (H, W) of the latency and the
            FLOPs measurements.
        warmup, iters (int): Untimed and timed rounds.
        flops (bool): Count FLOPs (else only parameters).
        onnx (bool): Also time ONNX Runtime.
        runs_dir (str, optional): Folder of the convergence runs
            (``<runs_dir>/<raccoon twin>/``).
        cfg_options (dict, optional): Overrides of every config.

    Returns:
        str: The table.
    """
    started = time.perf_counter()
    out_dir = osp.dirname(osp.abspath(out))
    if not osp.isdir(out_dir):
        raise FileNotFoundError(f'--out folder does not exist: {out_dir}')
    backends = ['pytorch'] + (['onnxruntime'] if onnx else [])
    rows = []
    for index, config in enumerate(configs):
        logger.info(f'[{index + 1}/{len(configs)}] size of {config}')
        row = dict(config=config, backbone=backbone_name(config),
                   params=None, flops=None, run=None)
        if flops:
            info = config_complexity(config, 'detector', flops_shape,
                                     cfg_options)
            row['params'], row['flops'] = info['params'], info['flops']
        else:
            model = build_model(config, 'detector', cfg_options)
            row['params'] = sum(p.numel() for p in model.parameters())
        if runs_dir:
            row['run'] = read_convergence_run(
                osp.join(runs_dir, raccoon_twin(config)))
            if row['run'] is None:
                logger.warning(f'no finished convergence run of '
                               f'{raccoon_twin(config)} in {runs_dir}')
        rows.append(row)
    logger.info(f'timing {len(configs)} configs x {backends}, alternating')
    latency = measure_latency(configs, shape, cfg_options, backends, warmup,
                              iters, logger)
    for row in rows:
        row['eager'] = latency[row['config']]['pytorch']
        row['ort'] = latency[row['config']].get('onnxruntime')
        logger.info(format_row(row, rows[0], bool(runs_dir)))
    table = render(rows, shape, flops_shape, warmup, iters,
                   torch.get_num_threads(), runs_dir,
                   time.perf_counter() - started)
    write_between_markers(out, table)
    logger.info(f'wrote {out}:\n{table}')
    return table


def write_between_markers(path: str, text: str) -> None:
    """Write ``text`` to ``path``; if ``path`` exists with both
    :data:`MARKERS`, only the part between them is replaced."""
    content = text
    if osp.isfile(path):
        with open(path) as f:
            old = f.read()
        start, end = MARKERS
        if start in old and end in old.split(start, 1)[1]:
            head, rest = old.split(start, 1)
            tail = rest.split(end, 1)[1]
            content = f'{head}{start}\n{text}{end}{tail}'
    with open(path, 'w') as f:
        f.write(content)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
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


def main(argv: Optional[List[str]] = None) -> int:
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
