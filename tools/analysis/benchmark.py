"""Benchmark inference latency, throughput and memory of a config's model.

    python tools/analysis/benchmark.py configs/rtdetr_rmt_t.py \
        [--part backbone|detector] [--shape 640 | --shape H W] [--batch 1] \
        [--warmup 5] [--iters 20] [--threads N] [--cfg-options k=v ...]

The model is built from the config (random weights; ``init_cfg`` checkpoints
are not loaded), put in eval mode and run on the CPU under ``torch.no_grad``:
``--part backbone`` times ``model.backbone(images)``, ``--part detector``
times ``model.predict(inputs, data_samples)`` (backbone, neck, decoder and
post-processing) on a pre-processed batch of random images.

Reported: latency median / p90 / mean over ``--iters`` timed runs (after
``--warmup`` untimed ones), throughput (images / s from the mean latency),
and memory as resident-set-size (RSS) of this process: the peak RSS sampled
every 2 ms by a background thread (psutil) during warm-up + timed runs,
minus the RSS just before the first run ("peak RSS growth"), plus the
process's lifetime peak RSS (``getrusage`` ``ru_maxrss``, includes building
the model).

``--backend onnxruntime`` times the end-to-end ONNX graph of
``tools/deploy/export_onnx.py`` in ONNX Runtime. The measurement is
``rtdetr_zoo.analysis.benchmark``.
"""
import argparse
import os.path as osp

import torch
from mmengine.config import DictAction
from mmengine.logging import MMLogger

from rtdetr_zoo.analysis import BACKENDS, benchmark, input_shape


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('--part', choices=['backbone', 'detector'],
                        default='detector', help='what to time')
    parser.add_argument('--shape', type=int, nargs='+', default=[640],
                        help='input size: one value (square) or H W')
    parser.add_argument('--batch', type=int, default=1, help='batch size')
    parser.add_argument('--warmup', type=int, default=5,
                        help='untimed runs first')
    parser.add_argument('--iters', type=int, default=20, help='timed runs')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch default)')
    parser.add_argument('--backend', choices=sorted(BACKENDS),
                        default='pytorch', help='inference backend')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args()
    if len(args.shape) not in (1, 2):
        parser.error(f'--shape takes 1 or 2 values, got {args.shape}')
    if args.batch < 1 or args.iters < 1 or args.warmup < 0:
        parser.error('--batch and --iters must be >= 1, --warmup >= 0')
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    return args


def main():
    args = parse_args()
    logger = MMLogger.get_instance('benchmark', log_level='INFO')
    if args.threads:
        torch.set_num_threads(args.threads)
    benchmark(args.config, logger, part=args.part,
              shape=input_shape(args.shape), batch=args.batch,
              warmup=args.warmup, iters=args.iters, backend=args.backend,
              cfg_options=args.cfg_options)


if __name__ == '__main__':
    main()
