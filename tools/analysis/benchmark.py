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

``--onnx A.onnx [B.onnx ...]`` (implies ``--backend onnxruntime``; CONFIG
may then be omitted) times existing graphs instead, e.g. the fp32 and INT8
exports of one model, on random images of each graph's fixed input size;
with several files the runs alternate and the speed-up of each file over
the first is reported (``rtdetr_zoo.analysis.benchmark.benchmark_onnx``):

    python tools/analysis/benchmark.py --onnx r18.onnx r18_int8.onnx \
        --threads 2 --warmup 3 --iters 20
"""
import argparse
import os.path as osp

import torch
from mmengine.config import DictAction
from mmengine.logging import MMLogger

from rtdetr_zoo.analysis import BACKENDS, benchmark, input_shape
from rtdetr_zoo.analysis.benchmark import benchmark_onnx


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('config', nargs='?', default=None,
                        help='config file (optional with --onnx)')
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
    parser.add_argument('--onnx', nargs='+', default=None, metavar='PATH',
                        help='time existing .onnx graphs (alternating runs; '
                        'implies --backend onnxruntime)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args()
    if args.onnx:
        for path in args.onnx:
            if not osp.isfile(path):
                parser.error(f'--onnx file not found: {path}')
        if args.iters < 1 or args.warmup < 0:
            parser.error('--iters must be >= 1, --warmup >= 0')
        return args
    if args.config is None:
        parser.error('a config file is needed (or --onnx PATH ...)')
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
    if args.onnx:
        benchmark_onnx(args.onnx, logger, warmup=args.warmup,
                       iters=args.iters, num_threads=args.threads)
        return
    benchmark(args.config, logger, part=args.part,
              shape=input_shape(args.shape), batch=args.batch,
              warmup=args.warmup, iters=args.iters, backend=args.backend,
              cfg_options=args.cfg_options)


if __name__ == '__main__':
    main()
