"""Benchmark latency, throughput and memory of a config's model on the CPU.

    python tools/analysis/benchmark.py configs/rtdetr_rmt_t.py \
        [--mode infer|train] [--bf16] [--channels-last] \
        [--part backbone|detector] [--shape 640 | --shape H W] [--batch 1] \
        [--warmup 5] [--iters 20] [--threads N] [--cfg-options k=v ...] \
        [--compare REV] [--profile]

``--mode train`` times a training step instead: forward + loss + backward +
the config's optimizer step (its learning rates and gradient clipping) on
random images with 3 random boxes each, and reports the peak RSS growth of
the step. ``--bf16`` runs the forward (and loss) under
``torch.autocast('cpu', dtype=torch.bfloat16)``; ``--channels-last`` puts
the weights and images in ``torch.channels_last``.

``--compare REV`` times the same thing with the package and configs of git
revision REV (checked out in a temporary ``git worktree``) and of the
working tree, alternately, each in its own process, and prints both medians,
their peak RSS growth and the speed-up (e.g. ``--compare HEAD~1`` for the
effect of the last commit):

    python tools/analysis/benchmark.py configs/rtdetr_r18vd_coco.py \
        --mode train --batch 2 --threads 2 --compare 8dbc601 --iters 10

``--baseline-fp32`` times REV in eager PyTorch float32 without
channels-last whatever the other flags say, e.g. the working tree's bf16 (or
its ONNX Runtime graph, ``--backend onnxruntime``) against the old eager
float32:

    python tools/analysis/benchmark.py configs/rtdetr_r18vd_coco.py \
        --bf16 --threads 2 --compare 8dbc601 --baseline-fp32 --iters 20

``--profile`` prints a ``torch.profiler`` table of one run (sorted by self
CPU time) and the number of Python function calls instead of timing.

``--count-ops`` counts the host-side work of one run instead of timing it:
aten calls (each at least one kernel launch on a GPU; views excluded) and
synchronisation points (``nonzero``, ``.item()``), the GPU time's driver at
real-time model sizes, exact and load-independent on a CPU. With
``--compare REV`` both trees are counted, with the operators that changed
most (docs/performance.md, "GPU"):

    python tools/analysis/benchmark.py configs/rtdetr_r18vd_coco.py \
        --mode train --batch 16 --shape 320 --count-ops --compare 3b3742a

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
``tools/deploy/export_onnx.py`` in ONNX Runtime.

The logic: the unit of work and its memory in
``tools/analysis/timed_step.py``, the comparison with REV in
``tools/analysis/revision_compare.py``, the timing loop (and inference
timing for your own code) in ``rtdetr_zoo.analysis.benchmark``.

``--onnx A.onnx [B.onnx ...]`` (implies ``--backend onnxruntime``; CONFIG
may then be omitted) times existing graphs instead, e.g. the fp32 and INT8
exports of one model, on random images of each graph's fixed input size;
with several files the runs alternate and the speed-up of each file over
the first is reported (``rtdetr_zoo.analysis.benchmark_onnx``):

    python tools/analysis/benchmark.py --onnx r18.onnx r18_int8.onnx \
        --threads 2 --warmup 3 --iters 20
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import DictAction
from mmengine.logging import MMLogger

from rtdetr_zoo.analysis import benchmark_onnx, input_shape

# The repository root, so that tools.analysis imports (see its __init__).
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
from tools.analysis.revision_compare import (compare_revisions,  # noqa: E402
                                             count_ops)
from tools.analysis.timed_step import (BACKENDS, MODES,  # noqa: E402
                                       PARTS, benchmark_step, profile_step)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('config', nargs='?', default=None,
                        help='config file (optional with --onnx)')
    parser.add_argument('--part', choices=PARTS,
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
    parser.add_argument('--mode', choices=MODES, default='infer',
                        help='inference, or a training step (forward, loss, '
                        'backward, optimizer step)')
    parser.add_argument('--bf16', action='store_true',
                        help='bf16 autocast on the CPU')
    parser.add_argument('--channels-last', action='store_true',
                        help='channels-last weights and images')
    parser.add_argument('--compare', metavar='REV', default=None,
                        help='also time git revision REV (temporary git '
                        'worktree), alternating, and print the speed-up')
    parser.add_argument('--baseline-fp32', action='store_true',
                        help='with --compare: time REV in eager PyTorch '
                        'float32 without channels-last (e.g. the working '
                        'tree\'s --bf16 or onnxruntime against the old '
                        'eager float32)')
    parser.add_argument('--profile', action='store_true',
                        help='print a torch.profiler table of one run')
    parser.add_argument('--count-ops', action='store_true',
                        help='count the aten calls and syncs of one run '
                        '(with --compare REV: of both trees)')
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
    if args.mode == 'train' and args.part != 'detector':
        parser.error('--mode train times the whole detector (--part '
                     'detector)')
    if args.baseline_fp32 and not args.compare:
        parser.error('--baseline-fp32 goes with --compare REV')
    if args.backend != 'pytorch' and (args.mode == 'train' or args.bf16
                                      or args.channels_last or args.profile
                                      or args.count_ops):
        parser.error('--mode train, --bf16, --channels-last, --profile and '
                     '--count-ops are for --backend pytorch')
    if args.count_ops and (args.profile or args.baseline_fp32):
        parser.error('--count-ops goes without --profile and '
                     '--baseline-fp32')
    return args


def main() -> None:
    args = parse_args()
    logger = MMLogger.get_instance('benchmark', log_level='INFO')
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.onnx:
        benchmark_onnx(args.onnx, logger, warmup=args.warmup,
                       iters=args.iters, num_threads=args.threads)
        return
    step = dict(mode=args.mode, part=args.part, batch=args.batch,
                shape=input_shape(args.shape), bf16=args.bf16,
                channels_last=args.channels_last,
                cfg_options=args.cfg_options, backend=args.backend)
    if args.count_ops:
        try:
            count_ops(args.config, logger, rev=args.compare, **step)
        except (ValueError, FileNotFoundError) as error:
            raise SystemExit(f'error: {error}')
    elif args.profile:
        profile_step(args.config, logger, **step)
    elif args.compare:
        try:
            baseline = (dict(bf16=False, channels_last=False,
                             backend='pytorch')
                        if args.baseline_fp32 else None)
            compare_revisions(args.config, args.compare, logger,
                              warmup=args.warmup, iters=args.iters,
                              threads=args.threads, baseline_kwargs=baseline,
                              **step)
        except (ValueError, FileNotFoundError) as error:
            raise SystemExit(f'error: {error}')
    else:
        benchmark_step(args.config, logger, warmup=args.warmup,
                       iters=args.iters, **step)


if __name__ == '__main__':
    main()
