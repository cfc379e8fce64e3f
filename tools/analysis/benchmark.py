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

Backends are small runner classes registered in ``BACKENDS`` (a runner is
built from the model and the inputs and called without arguments once per
iteration); an ONNX Runtime runner only needs to export the model in its
constructor and run the session in ``__call__``.
"""
import argparse
import resource
import statistics
import threading
import time

import psutil
import torch
from mmengine.config import DictAction
from mmengine.logging import MMLogger

from mmdet.structures import DetDataSample
from rtdetr_zoo.deploy import load_detector


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
    return args


def input_shape(shape):
    """``[S]`` -> (S, S); ``[H, W]`` -> (H, W)."""
    return (shape[0], shape[0]) if len(shape) == 1 else tuple(shape)


def build_model(config, part, cfg_options=None):
    """Build ``config``'s model (eval mode) or its backbone on the CPU."""
    model = load_detector(config, cfg_options=cfg_options)
    return model.backbone if part == 'backbone' else model


def make_inputs(model, part, batch, height, width, seed=0):
    """Random inputs: an image tensor, plus pre-processed data samples for
    the detector (through its data pre-processor, like the test loop)."""
    gen = torch.Generator().manual_seed(seed)
    if part == 'backbone':
        return torch.randn(batch, 3, height, width, generator=gen), None
    images = [
        torch.randint(0, 256, (3, height, width), generator=gen,
                      dtype=torch.uint8) for _ in range(batch)
    ]
    samples = [
        DetDataSample(metainfo=dict(img_shape=(height, width),
                                    ori_shape=(height, width),
                                    scale_factor=(1.0, 1.0)))
        for _ in range(batch)
    ]
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples),
                                   training=False)
    return data['inputs'], data['data_samples']


class PytorchRunner:
    """Eager PyTorch on the CPU, ``torch.no_grad``."""

    def __init__(self, model, inputs, samples):
        self.model, self.inputs, self.samples = model, inputs, samples

    def __call__(self):
        with torch.no_grad():
            if self.samples is None:
                return self.model(self.inputs)
            return self.model.predict(self.inputs, self.samples)


BACKENDS = {'pytorch': PytorchRunner}


class OnnxRuntimeRunner:
    """ONNX Runtime (CPU): the detector is exported end to end to a
    temporary file (``rtdetr_zoo.deploy.export_onnx``: pre-processing,
    deploy-fused modules, top-k; fixed input size and batch) and the session
    runs with as many threads as torch uses."""

    def __init__(self, model, inputs, samples):
        import tempfile

        from rtdetr_zoo.deploy import create_ort_session, export_onnx
        if samples is None:
            raise ValueError('--backend onnxruntime times the whole detector '
                             '(the exported graph); use --part detector')
        height, width = samples[0].img_shape
        preprocessor = model.data_preprocessor
        images = inputs[..., :height, :width]
        if getattr(preprocessor, '_enable_normalize', False):
            images = images * preprocessor.std + preprocessor.mean
        self.images = images.contiguous().numpy()
        with tempfile.TemporaryDirectory() as tmp:
            path = f'{tmp}/model.onnx'
            export_onnx(model, path, (height, width),
                        batch_size=inputs.shape[0])
            self.session = create_ort_session(path, torch.get_num_threads())

    def __call__(self):
        return self.session.run(None, {'images': self.images})


BACKENDS['onnxruntime'] = OnnxRuntimeRunner


class PeakRSS:
    """Samples this process's RSS in a background thread; keeps the max."""

    def __init__(self, interval=0.002):
        self.interval = interval
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def percentile(values, q):
    """Linear-interpolated percentile ``q`` in [0, 100] of ``values``."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def run_benchmark(runner, warmup, iters, batch, logger):
    """Warm up, time ``iters`` runs; return a dict of latency/memory stats."""
    baseline = psutil.Process().memory_info().rss
    times = []
    with PeakRSS() as rss:
        for i in range(warmup):
            runner()
            logger.info(f'warm-up {i + 1}/{warmup}')
        for i in range(iters):
            start = time.perf_counter()
            runner()
            times.append(time.perf_counter() - start)
            if (i + 1) % max(iters // 5, 1) == 0 or i + 1 == iters:
                logger.info(f'timed {i + 1}/{iters}: '
                            f'{times[-1] * 1000:.1f} ms')
    mean = statistics.fmean(times)
    return dict(
        median_ms=statistics.median(times) * 1000,
        p90_ms=percentile(times, 90) * 1000,
        mean_ms=mean * 1000,
        throughput=batch / mean,
        baseline_rss_mib=baseline / 2**20,
        peak_rss_growth_mib=(rss.peak - baseline) / 2**20,
        max_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main():
    args = parse_args()
    logger = MMLogger.get_instance('benchmark', log_level='INFO')
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = input_shape(args.shape)
    model = build_model(args.config, args.part, args.cfg_options)
    params = sum(p.numel() for p in model.parameters())
    inputs, samples = make_inputs(model, args.part, args.batch, height, width)
    runner = BACKENDS[args.backend](model, inputs, samples)
    logger.info(
        f'{args.config} [{args.part}, {args.backend}]: {params:,} params, '
        f'{height}x{width} images -> input tensor '
        f'{"x".join(map(str, inputs.shape))}, '
        f'{torch.get_num_threads()} CPU threads')
    stats = run_benchmark(runner, args.warmup, args.iters, args.batch, logger)
    logger.info(
        f'latency: median {stats["median_ms"]:.1f} ms, '
        f'p90 {stats["p90_ms"]:.1f} ms, mean {stats["mean_ms"]:.1f} ms '
        f'({args.iters} runs after {args.warmup} warm-up)')
    logger.info(f'throughput: {stats["throughput"]:.2f} img/s '
                f'(batch {args.batch})')
    logger.info(
        f'memory: peak RSS growth {stats["peak_rss_growth_mib"]:.0f} MiB '
        f'over {stats["baseline_rss_mib"]:.0f} MiB before the first run '
        f'(psutil RSS sampled every 2 ms); process peak RSS '
        f'{stats["max_rss_mib"]:.0f} MiB (getrusage ru_maxrss)')


if __name__ == '__main__':
    main()
