"""The README's model-zoo table (markdown) for a set of configs.

For each config (random weights; CPU), :func:`model_zoo_table` measures:

- params (M) and GFLOPs (multiply-adds, :func:`config_complexity`) at
  ``flops_shape``, of the model as the config builds it (training-time
  structure, the convention of papers);
- CPU latency, median over ``iters`` runs after ``warmup``, at batch 1 and
  ``shape``: PyTorch eager (``model.predict`` on a pre-processed batch,
  ``torch.no_grad``) and ONNX Runtime (the end-to-end graph of
  :func:`rtdetr_zoo.deploy.export_onnx`), both with every deploy path
  applied (RepVGG fusion, RIFormer re-parameterisation) and the same thread
  count;
- mAP (COCO bbox mAP on the config's own test set, raccoon val for the
  ``*_raccoon`` configs) where a checkpoint is given.
"""
import os.path as osp
import tempfile

import torch
from mmengine.registry import RUNNERS

from ..apis import load_config
from ..deploy import switch_to_deploy
from .benchmark import BACKENDS, build_model, make_inputs, run_benchmark
from .flops import config_complexity

COLUMNS = ('config', 'backbone', 'params (M)', 'GFLOPs', 'eager (ms)',
           'ORT (ms)', 'ORT speed-up', 'mAP')


def measure_latency(config, shape, cfg_options, backends, warmup, iters,
                    logger):
    """Median latency (ms) per backend at batch 1 and (H, W) = ``shape``,
    deploy paths applied; ``{backend: ms}``."""
    model = build_model(config, 'detector', cfg_options)
    switch_to_deploy(model)
    inputs, samples = make_inputs(model, 'detector', 1, *shape)
    latency = {}
    for backend in backends:
        runner = BACKENDS[backend](model, inputs, samples)
        stats = run_benchmark(runner, warmup, iters, 1, logger)
        latency[backend] = stats['median_ms']
    return latency


def evaluate_map(config, checkpoint, cfg_options=None):
    """COCO bbox mAP of ``checkpoint`` on ``config``'s test set (the
    config's runner, ``load_from=checkpoint``, in a temporary work dir)."""
    cfg = load_config(config, cfg_options)
    with tempfile.TemporaryDirectory() as work_dir:
        cfg.work_dir = work_dir
        cfg.load_from = checkpoint
        metrics = RUNNERS.build(cfg).test()
    key = next((k for k in metrics if k.endswith('bbox_mAP')), None)
    if key is None:
        raise KeyError(f'the evaluator of {config} returned no bbox_mAP '
                       f'(got {sorted(metrics)})')
    return metrics[key]


def backbone_name(config):
    """``Type-arch`` of ``config``'s backbone, e.g. ``ResNetVd-18``."""
    backbone = load_config(config).model.backbone
    for key in ('depth', 'arch', 'variant', 'model_name'):
        if key in backbone:
            return f'{backbone["type"]}-{backbone[key]}'
    return backbone['type']


def format_row(row):
    """One markdown row of :data:`COLUMNS` from a measured ``row`` dict
    (``config``, ``backbone``, ``params``, ``flops``, ``eager``, ``ort``,
    ``map``; ``None`` = not measured, shown as an en dash)."""

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


def render(rows, shape, flops_shape, warmup, iters, threads):
    """The markdown table of ``rows`` and its footnote."""
    height, width = shape
    fh, fw = flops_shape
    lines = [
        '| ' + ' | '.join(COLUMNS) + ' |',
        '|' + '---|' * len(COLUMNS),
        *(format_row(row) for row in rows), '',
        f'Params and GFLOPs (multiply-adds, mmengine counter) at {fh}x{fw} '
        f'for the model as configured; CPU latency = median of '
        f'{iters} runs (after {warmup} warm-up), batch 1, '
        f'{height}x{width}, {threads} thread(s), deploy paths applied; '
        f'eager = PyTorch `model.predict`, ORT = ONNX Runtime on the '
        f'end-to-end graph of `tools/deploy/export_onnx.py`; mAP = COCO '
        f'bbox mAP (%) on the config\'s test set, only where a checkpoint '
        f'was given. Random weights for speed and size.'
    ]
    return '\n'.join(lines) + '\n'


def model_zoo_table(configs, out, logger, shape=(640, 640),
                    flops_shape=(640, 640), warmup=3, iters=10, flops=True,
                    onnx=True, checkpoints=None, cfg_options=None):
    """Measure ``configs`` (see module doc) and write the table to ``out``.

    Args:
        configs (list[str]): Config files.
        out (str): Markdown file to write; its folder must exist.
        logger (logging.Logger): Where progress and each row go.
        shape, flops_shape (tuple[int, int]): (H, W) of the latency and the
            FLOPs measurements.
        warmup, iters (int): Untimed and timed runs per backend.
        flops (bool): Count FLOPs (else only parameters).
        onnx (bool): Also time ONNX Runtime.
        checkpoints (dict, optional): ``{config: checkpoint}`` for the mAP
            column (configs compared after ``os.path.normpath``).
        cfg_options (dict, optional): Overrides of every config.

    Returns:
        str: The markdown written.
    """
    out_dir = osp.dirname(osp.abspath(out))
    if not osp.isdir(out_dir):
        raise FileNotFoundError(f'--out folder does not exist: {out_dir}')
    checkpoints = {osp.normpath(k): v for k, v in (checkpoints or {}).items()}
    backends = ['pytorch'] + (['onnxruntime'] if onnx else [])
    rows = []
    for index, config in enumerate(configs):
        logger.info(f'[{index + 1}/{len(configs)}] {config}')
        row = dict(config=config, backbone=backbone_name(config),
                   params=None, flops=None, map=None)
        if flops:
            info = config_complexity(config, 'detector', flops_shape,
                                     cfg_options)
            row['params'], row['flops'] = info['params'], info['flops']
        else:
            model = build_model(config, 'detector', cfg_options)
            row['params'] = sum(p.numel() for p in model.parameters())
        latency = measure_latency(config, shape, cfg_options, backends,
                                  warmup, iters, logger)
        row['eager'] = latency['pytorch']
        row['ort'] = latency.get('onnxruntime')
        checkpoint = checkpoints.get(osp.normpath(config))
        if checkpoint:
            row['map'] = evaluate_map(config, checkpoint, cfg_options)
        rows.append(row)
        logger.info(format_row(row))
    table = render(rows, shape, flops_shape, warmup, iters,
                   torch.get_num_threads())
    with open(out, 'w') as f:
        f.write(table)
    logger.info(f'wrote {out}:\n{table}')
    return table
