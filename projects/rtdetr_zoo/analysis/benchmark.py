"""Inference latency, throughput and memory of a config's model on the CPU.

The model is built from the config by :func:`rtdetr_zoo.apis.load_detector`
(random weights; ``init_cfg`` checkpoints are not loaded), in eval mode, and
run under ``torch.no_grad``: part ``'backbone'`` times
``model.backbone(images)``, part ``'detector'`` times
``model.predict(inputs, data_samples)`` (backbone, neck, decoder and
post-processing) on a pre-processed batch of random images.

Reported by :func:`run_benchmark`: latency median / p90 / mean over the
timed runs (after untimed warm-up runs), throughput (images / s from the
mean latency), and memory as resident-set-size (RSS) of this process: the
peak RSS sampled every 2 ms by a background thread (psutil) during warm-up
+ timed runs, minus the RSS just before the first run ("peak RSS growth"),
plus the process's lifetime peak RSS (``getrusage`` ``ru_maxrss``, includes
building the model).

Backends are small runner classes registered in :data:`BACKENDS` (a runner
is built from the model and the inputs and called without arguments once per
iteration); the ONNX Runtime runner exports the model in its constructor and
runs the session in ``__call__``.

:func:`benchmark_onnx` times existing ``.onnx`` files (e.g. the fp32 and
INT8 graphs of one model) with :class:`OnnxFileRunner`: with several files
the runs alternate (file 1, file 2, ..., file 1, ...), so that a change of
machine load affects every graph alike.
"""
import os.path as osp
import resource
import statistics
import tempfile
import threading
import time

import psutil
import torch

from mmdet.structures import DetDataSample

from ..apis import load_detector
from ..deploy import create_ort_session, export_onnx, graph_input_shape

PARTS = ('backbone', 'detector')


def input_shape(shape):
    """``[S]`` -> (S, S); ``[H, W]`` -> (H, W)."""
    return (shape[0], shape[0]) if len(shape) == 1 else tuple(shape)


def build_model(config, part, cfg_options=None):
    """``config``'s detector (eval mode, CPU, random weights) or, for part
    ``'backbone'``, its backbone."""
    if part not in PARTS:
        raise ValueError(f'part must be one of {PARTS}, got {part!r}')
    model = load_detector(config, cfg_options=cfg_options)
    return model.backbone if part == 'backbone' else model


def make_inputs(model, part, batch, height, width, seed=0):
    """Random inputs for ``model``.

    Returns:
        tuple: for part ``'backbone'``, images (batch, 3, height, width) and
        ``None``; for ``'detector'``, the batch through the model's data
        pre-processor (like the test loop): ``(inputs, data_samples)``.
    """
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


class OnnxRuntimeRunner:
    """ONNX Runtime (CPU): the detector is exported end to end to a
    temporary file (:func:`rtdetr_zoo.deploy.export_onnx`: pre-processing,
    deploy-fused modules, top-k; fixed input size and batch) and the session
    runs with as many threads as torch uses. Returns the graph's outputs
    ``(labels, boxes, scores)``."""

    def __init__(self, model, inputs, samples):
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


class OnnxFileRunner:
    """ONNX Runtime (CPU) on an existing graph file of
    :func:`rtdetr_zoo.deploy.export_onnx` (fp32 or quantized): random
    float32 RGB images in [0, 255] of the graph's fixed (B, 3, H, W) input
    (B = 1 when dynamic), ``num_threads`` intra-op threads (default: as many
    as torch uses).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """

    def __init__(self, path, num_threads=None, seed=0):
        if not osp.isfile(path):
            raise FileNotFoundError(f'ONNX file not found: {path}')
        self.path = path
        self.session = create_ort_session(
            path, num_threads or torch.get_num_threads())
        batch, height, width = graph_input_shape(self.session, path)
        self.shape = (batch or 1, 3, height, width)
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, self.shape,
                                    generator=gen).float().numpy()

    def __call__(self):
        return self.session.run(None, {'images': self.images})


BACKENDS = {'pytorch': PytorchRunner, 'onnxruntime': OnnxRuntimeRunner}


class PeakRSS:
    """Samples this process's RSS in a background thread; keeps the max
    (bytes) in ``peak``."""

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


def latency_stats(times, batch):
    """``times`` (seconds per run) -> ``median_ms``, ``p90_ms``,
    ``mean_ms`` and ``throughput`` (images / s at ``batch``)."""
    mean = statistics.fmean(times)
    return dict(median_ms=statistics.median(times) * 1000,
                p90_ms=percentile(times, 90) * 1000, mean_ms=mean * 1000,
                throughput=batch / mean)


def run_benchmark(runner, warmup, iters, batch, logger):
    """Call ``runner`` ``warmup`` times, then time ``iters`` calls.

    Returns:
        dict: ``median_ms``, ``p90_ms``, ``mean_ms``, ``throughput``
        (images / s at ``batch``), ``baseline_rss_mib``,
        ``peak_rss_growth_mib`` and ``max_rss_mib``.
    """
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
    return dict(
        latency_stats(times, batch),
        baseline_rss_mib=baseline / 2**20,
        peak_rss_growth_mib=(rss.peak - baseline) / 2**20,
        max_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def benchmark(config, logger, part='detector', shape=(640, 640), batch=1,
              warmup=5, iters=20, backend='pytorch', cfg_options=None):
    """Benchmark ``config``'s model (see module doc), logging progress and
    results to ``logger``.

    Args:
        config (str | Config): Config file or object.
        logger (logging.Logger): Where the progress and results go.
        part (str): ``'backbone'`` or ``'detector'``.
        shape (tuple[int, int]): Image size (H, W).
        batch (int): Batch size.
        warmup (int): Untimed runs first.
        iters (int): Timed runs.
        backend (str): A key of :data:`BACKENDS`.
        cfg_options (dict, optional): Config overrides.

    Returns:
        dict: the statistics of :func:`run_benchmark` plus ``params``.
    """
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {sorted(BACKENDS)}, got '
                         f'{backend!r}')
    height, width = shape
    model = build_model(config, part, cfg_options)
    params = sum(p.numel() for p in model.parameters())
    inputs, samples = make_inputs(model, part, batch, height, width)
    runner = BACKENDS[backend](model, inputs, samples)
    logger.info(
        f'{config} [{part}, {backend}]: {params:,} params, '
        f'{height}x{width} images -> input tensor '
        f'{"x".join(map(str, inputs.shape))}, '
        f'{torch.get_num_threads()} CPU threads')
    stats = run_benchmark(runner, warmup, iters, batch, logger)
    logger.info(
        f'latency: median {stats["median_ms"]:.1f} ms, '
        f'p90 {stats["p90_ms"]:.1f} ms, mean {stats["mean_ms"]:.1f} ms '
        f'({iters} runs after {warmup} warm-up)')
    logger.info(f'throughput: {stats["throughput"]:.2f} img/s '
                f'(batch {batch})')
    logger.info(
        f'memory: peak RSS growth {stats["peak_rss_growth_mib"]:.0f} MiB '
        f'over {stats["baseline_rss_mib"]:.0f} MiB before the first run '
        f'(psutil RSS sampled every 2 ms); process peak RSS '
        f'{stats["max_rss_mib"]:.0f} MiB (getrusage ru_maxrss)')
    return dict(stats, params=params)


def benchmark_onnx(paths, logger, warmup=5, iters=20, num_threads=None):
    """Time existing ``.onnx`` graphs in ONNX Runtime, runs alternating
    between the files (see module doc), with progress logged.

    Args:
        paths (list[str]): Graph files (fixed H, W input).
        logger (logging.Logger): Where the progress and results go.
        warmup (int): Untimed runs of each graph first.
        iters (int): Timed runs of each graph.
        num_threads (int, optional): ONNX Runtime intra-op threads
            (default: torch's thread count).

    Returns:
        dict: per path, the statistics of :func:`latency_stats` plus
        ``input_shape`` (B, 3, H, W) and, from the second file on,
        ``speedup`` (the first file's median / this file's median).
    """
    runners = [OnnxFileRunner(path, num_threads) for path in paths]
    threads = num_threads or torch.get_num_threads()
    for runner in runners:
        logger.info(f'{runner.path}: input {runner.shape}, {threads} threads')
    for _ in range(warmup):
        for runner in runners:
            runner()
    logger.info(f'{warmup} warm-up runs of each graph done')
    times = [[] for _ in runners]
    for i in range(iters):
        for runner, runner_times in zip(runners, times):
            start = time.perf_counter()
            runner()
            runner_times.append(time.perf_counter() - start)
        if (i + 1) % max(iters // 5, 1) == 0 or i + 1 == iters:
            logger.info(f'timed {i + 1}/{iters}: ' + ', '.join(
                f'{t[-1] * 1000:.1f} ms' for t in times))
    results = {}
    for runner, runner_times in zip(runners, times):
        stats = latency_stats(runner_times, runner.shape[0])
        stats['input_shape'] = runner.shape
        if results:
            stats['speedup'] = (results[paths[0]]['median_ms'] /
                                stats['median_ms'])
        results[runner.path] = stats
        logger.info(
            f'{runner.path}: median {stats["median_ms"]:.1f} ms, p90 '
            f'{stats["p90_ms"]:.1f} ms, mean {stats["mean_ms"]:.1f} ms'
            + (f', {stats["speedup"]:.2f}x vs {paths[0]}'
               if 'speedup' in stats else ''))
    return results
