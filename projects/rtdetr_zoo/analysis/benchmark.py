"""Latency and throughput of a config's model on the CPU, for use from your
own code: eager PyTorch or ONNX Runtime inference of the detector or its
backbone, and existing ``.onnx`` graphs.

The model is built from the config by :func:`rtdetr_zoo.apis.load_detector`
(random weights; ``init_cfg`` checkpoints are not loaded) and put in eval
mode; backend ``'pytorch'`` times ``model.predict(inputs, data_samples)``
(backbone, neck, decoder and post-processing; or ``model.backbone(images)``
for part ``'backbone'``) under ``torch.no_grad`` on a pre-processed batch of
random images, backend ``'onnxruntime'`` the end-to-end graph of
:func:`rtdetr_zoo.deploy.export_onnx` on the same images.

Reported by :func:`run_benchmark`: latency median / p90 / mean over the
timed runs (after untimed warm-up runs) and throughput (images / s from the
mean latency).

Backends are small runner classes registered in :data:`BACKENDS` (a runner
is built from the model and the inputs and called without arguments once per
iteration); the ONNX Runtime runner exports the model in its constructor and
runs the session in ``__call__``.

:func:`benchmark_onnx` times existing ``.onnx`` files (e.g. the fp32 and
INT8 graphs of one model) with :class:`OnnxFileRunner`: with several files
the runs alternate (file 1, file 2, ..., file 1, ...), so that a change of
machine load affects every graph alike.

Training steps, bf16 autocast, channels-last, memory, operator counts and
the comparison with another git revision are the checkout's
``tools/analysis/benchmark.py``.
"""
import logging
import os.path as osp
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.structures import InstanceData

from mmdet.structures import DetDataSample
from ..apis import load_detector

PARTS = ('backbone', 'detector')


def input_shape(shape: Sequence[int]) -> Tuple[int, int]:
    """``[S]`` -> (S, S); ``[H, W]`` -> (H, W)."""
    return (shape[0], shape[0]) if len(shape) == 1 else tuple(shape)


def build_model(config: Union[str, Config], part: str,
                cfg_options: Optional[dict] = None) -> nn.Module:
    """``config``'s detector (eval mode, CPU, random weights) or, for part
    ``'backbone'``, its backbone."""
    if part not in PARTS:
        raise ValueError(f'part must be one of {PARTS}, got {part!r}')
    model = load_detector(config, cfg_options=cfg_options)
    return model.backbone if part == 'backbone' else model


def make_inputs(
    model: nn.Module,
    part: str,
    batch: int,
    height: int,
    width: int,
    seed: int = 0,
    num_gts: int = 0
) -> Tuple[torch.Tensor, Optional[List[DetDataSample]]]:
    """Random inputs for ``model``.

    Args:
        num_gts (int): Random ground truth boxes per image (training).

    Returns:
        tuple: for part ``'backbone'``, images (batch, 3, height, width) and
        ``None``; for ``'detector'``, the batch through the model's data
        pre-processor (normalised and padded as in the test loop):
        ``(inputs, data_samples)``.
    """
    gen = torch.Generator().manual_seed(seed)
    if part == 'backbone':
        return torch.randn(batch, 3, height, width, generator=gen), None
    images = [
        torch.randint(0, 256, (3, height, width), generator=gen,
                      dtype=torch.uint8) for _ in range(batch)
    ]
    samples = []
    for _ in range(batch):
        sample = DetDataSample(metainfo=dict(
            img_shape=(height, width), ori_shape=(height, width),
            scale_factor=(1.0, 1.0)))
        if num_gts:
            size = torch.tensor([width, height])
            xy = torch.rand(num_gts, 2, generator=gen) * size * 0.6
            wh = (torch.rand(num_gts, 2, generator=gen) * 0.3 + 0.1) * size
            sample.gt_instances = InstanceData(
                bboxes=torch.cat([xy, xy + wh], 1),
                labels=torch.randint(0, model.bbox_head.num_classes,
                                     (num_gts, ), generator=gen))
        samples.append(sample)
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples),
                                   training=False)
    return data['inputs'], data['data_samples']


class PytorchRunner:
    """Eager PyTorch on the CPU, ``torch.no_grad``: ``model.predict(inputs,
    samples)``, or ``model(inputs)`` when ``samples`` is ``None`` (a
    backbone)."""

    def __init__(self, model: nn.Module, inputs: torch.Tensor,
                 samples: Optional[List[DetDataSample]]) -> None:
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

    def __init__(self, model: nn.Module, inputs: torch.Tensor,
                 samples: Optional[List[DetDataSample]]) -> None:
        # deploy/ imports onnx: loaded only for the onnxruntime backend.
        from ..deploy import create_ort_session, export_onnx
        if samples is None:
            raise ValueError('--backend onnxruntime times the whole detector '
                             '(the exported graph); use --part detector')
        height, width = samples[0].img_shape
        preprocessor = model.data_preprocessor
        images = inputs[..., :height, :width]
        if getattr(preprocessor, '_enable_normalize', False):
            images = images * preprocessor.std + preprocessor.mean
        self.images = images.contiguous(
            memory_format=torch.contiguous_format).numpy()
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

    def __init__(self, path: str, num_threads: Optional[int] = None,
                 seed: int = 0) -> None:
        # deploy/ imports onnx: loaded only when an ONNX graph is timed.
        from ..deploy import create_ort_session, graph_input_shape
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


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] of ``values``."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_stats(times: Sequence[float], batch: int) -> Dict[str, float]:
    """``times`` (seconds per run) -> ``median_ms``, ``p90_ms``,
    ``mean_ms`` and ``throughput`` (images / s at ``batch``)."""
    mean = statistics.fmean(times)
    return dict(median_ms=statistics.median(times) * 1000,
                p90_ms=percentile(times, 90) * 1000, mean_ms=mean * 1000,
                throughput=batch / mean)


def timed(call: Callable[[], object]) -> Callable[[], float]:
    """``call`` wrapped to return the seconds it took."""

    def run():
        start = time.perf_counter()
        call()
        return time.perf_counter() - start
    return run


def time_alternately(calls: Dict[str, Callable[[], float]], warmup: int,
                     iters: int,
                     logger: logging.Logger) -> Dict[str, List[float]]:
    """Run every ``calls`` entry once per round, in order, ``warmup`` untimed
    rounds then ``iters`` timed ones, so that a change of machine load
    affects every entry alike; progress is logged five times.

    Args:
        calls (dict[str, callable]): Name -> a function that does one unit
            of work and returns the seconds it took (see :func:`timed`).

    Returns:
        dict[str, list[float]]: the timed seconds of each name.
    """
    times = {name: [] for name in calls}
    for i in range(warmup + iters):
        for name, call in calls.items():
            seconds = call()
            if i >= warmup:
                times[name].append(seconds)
        done = i + 1 - warmup
        if done > 0 and (done % max(iters // 5, 1) == 0 or done == iters):
            logger.info(f'timed {done}/{iters}: ' + ', '.join(
                f'{name} {t[-1] * 1000:.1f} ms' for name, t in times.items()))
    return times


def log_setting(logger: logging.Logger, config: Union[str, Config],
                settings: Sequence[str], params: int, shape: Tuple[int, int],
                inputs: torch.Tensor) -> None:
    """One line: what is timed (``settings``, e.g. part and backend), the
    model's parameter count, the image size (H, W), the input tensor (after
    the data pre-processor's padding) and the CPU threads."""
    height, width = shape
    logger.info(
        f'{config} [{", ".join(settings)}]: {params:,} params, {height}x'
        f'{width} images -> input tensor '
        f'{"x".join(map(str, inputs.shape))}, '
        f'{torch.get_num_threads()} CPU threads')


def run_benchmark(runner: Callable[[], object], warmup: int, iters: int,
                  batch: int, logger: logging.Logger) -> Dict[str, float]:
    """Call ``runner`` ``warmup`` times, then time ``iters`` calls; progress
    and the results are logged.

    Returns:
        dict: :func:`latency_stats` of the timed calls.
    """
    times = []
    for i in range(warmup):
        runner()
        logger.info(f'warm-up {i + 1}/{warmup}')
    for i in range(iters):
        start = time.perf_counter()
        runner()
        times.append(time.perf_counter() - start)
        if (i + 1) % max(iters // 5, 1) == 0 or i + 1 == iters:
            logger.info(f'timed {i + 1}/{iters}: {times[-1] * 1000:.1f} ms')
    stats = latency_stats(times, batch)
    logger.info(
        f'latency: median {stats["median_ms"]:.1f} ms, '
        f'p90 {stats["p90_ms"]:.1f} ms, mean {stats["mean_ms"]:.1f} ms '
        f'({iters} runs after {warmup} warm-up)')
    logger.info(f'throughput: {stats["throughput"]:.2f} img/s '
                f'(batch {batch})')
    return stats


def benchmark(config: Union[str, Config],
              logger: logging.Logger,
              part: str = 'detector',
              shape: Tuple[int, int] = (640, 640),
              batch: int = 1,
              warmup: int = 5,
              iters: int = 20,
              backend: str = 'pytorch',
              cfg_options: Optional[dict] = None) -> Dict[str, float]:
    """Time inference of ``config``'s model (see module doc), logging
    progress and results to ``logger``.

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
    model = build_model(config, part, cfg_options)
    inputs, samples = make_inputs(model, part, batch, *shape)
    runner = BACKENDS[backend](model, inputs, samples)
    params = sum(p.numel() for p in model.parameters())
    log_setting(logger, config, [part, backend], params, shape, inputs)
    return dict(run_benchmark(runner, warmup, iters, batch, logger),
                params=params)


def benchmark_onnx(paths: Sequence[str],
                   logger: logging.Logger,
                   warmup: int = 5,
                   iters: int = 20,
                   num_threads: Optional[int] = None) -> Dict[str, dict]:
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
    times = time_alternately({r.path: timed(r) for r in runners}, warmup,
                             iters, logger)
    results = {}
    for runner in runners:
        stats = latency_stats(times[runner.path], runner.shape[0])
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
