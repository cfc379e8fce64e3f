"""One timed unit of work of a config's detector on the CPU (an inference
pass or a training step, with optional bf16 autocast and channels-last), what
one costs (memory, aten calls, a profiler table), and the worker process that
serves it to :mod:`tools.analysis.revision_compare`.

Modes:

- ``'infer'``: ``model.predict(inputs, data_samples)`` under
  ``torch.no_grad`` (part ``'detector'``), or ``model.backbone(images)``
  (part ``'backbone'``), in eval mode;
- ``'train'``: forward + loss (``model.loss``) + backward + optimizer step
  through the optim wrapper the config builds (its learning rates,
  multipliers and gradient clipping), on random images with random ground
  truth boxes (3 per image), in training mode.

Backend ``'onnxruntime'`` (inference of the detector) exports the model end
to end and times the ONNX Runtime session instead
(:class:`rtdetr_zoo.analysis.OnnxRuntimeRunner`).

Memory is the resident set size (RSS) of this process (:class:`PeakRSS`,
psutil, installed by ``tools/setup_env.sh``; not a dependency of the
package).

As a script, ``python tools/analysis/timed_step.py CONFIG [options]`` is the
worker of ``tools/analysis/benchmark.py --compare REV``
(:func:`serve`): it is started with ``PYTHONPATH=<tree>/projects`` to time
the code of another checkout, so it imports nothing from this folder and,
from ``rtdetr_zoo``, only ``rtdetr_zoo.analysis``'s ``build_model``,
``make_inputs``, ``PytorchRunner`` and ``OnnxRuntimeRunner``, which every
revision since the package got ``analysis/`` (``9f51e2b``) exports.
"""
import argparse
import contextlib
import json
import logging
import os.path as osp
import resource
import sys
import threading
import time
from collections import Counter
from typing import Callable, Dict, Optional, Tuple

import psutil
import torch
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper

import rtdetr_zoo
from rtdetr_zoo.analysis import (OnnxRuntimeRunner, PytorchRunner,
                                 build_model, make_inputs)

PARTS = ('backbone', 'detector')
MODES = ('infer', 'train')
BACKENDS = ('pytorch', 'onnxruntime')
# Lines of the worker protocol start with this (mmengine logs go to stdout
# too).
PROTOCOL_PREFIX = '@@timed_step '

# Host-work counting (:func:`count_host_work`), as ../shared/gpu/opcount.py
# counts: aten operators that move no data (views, metadata) launch no
# kernel on a GPU and are not counted; these two read a device value on the
# host, which waits for the GPU to finish all queued work.
NOT_COUNTED = frozenset({
    'aten::view', 'aten::reshape', 'aten::as_strided', 'aten::empty',
    'aten::t', 'aten::transpose', 'aten::permute', 'aten::expand',
    'aten::slice', 'aten::select', 'aten::unsqueeze', 'aten::squeeze',
    'aten::detach', 'aten::alias', 'aten::_unsafe_view',
    'aten::empty_strided', 'aten::resolve_conj', 'aten::resolve_neg',
    'aten::lift_fresh', 'aten::result_type', 'aten::is_nonzero',
    'aten::item', 'aten::size', 'aten::stride', 'aten::contiguous',
    'aten::flatten', 'aten::split', 'aten::unbind', 'aten::chunk',
    'aten::narrow', 'aten::unflatten', 'aten::_reshape_alias',
    'aten::view_as', 'aten::numpy_T', 'aten::empty_like'})
SYNC_OPS = frozenset({'aten::nonzero', 'aten::_local_scalar_dense'})


def count_host_work(call: Callable[[], object]) -> dict:
    """The host-side work of one ``call()`` (after one untimed warm-up call):
    the aten operators it runs, each at least one kernel launch on a GPU
    (views and metadata-only operators excluded, nested operators counted
    too), and its synchronisation points (``nonzero``, and
    ``_local_scalar_dense``: ``.item()``, ``.tolist()``, ``bool()`` of a
    tensor), each a stall of the host until the GPU is idle. On a CPU these
    counts are exact and independent of the machine's load: the GPU's cost
    driver at real-time model sizes, counted without a GPU.

    Returns:
        dict: ``aten_calls`` (int), ``syncs`` (int) and ``ops`` (dict of
        operator name -> calls, syncs included, most frequent first).
    """
    from torch.profiler import ProfilerActivity, profile
    call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    names = [e.name for e in prof.events() if e.name.startswith('aten::')]
    ops = Counter(n for n in names if n not in NOT_COUNTED)
    syncs = sum(ops[name] for name in SYNC_OPS)
    aten_calls = sum(ops.values()) - ops['aten::_local_scalar_dense']
    return dict(aten_calls=aten_calls, syncs=syncs,
                ops=dict(ops.most_common()))


def autocast(bf16: bool):
    """``torch.autocast('cpu', bfloat16)`` when ``bf16``, else a no-op.

    :func:`rtdetr_zoo.apis.bf16_autocast` does the same, but this module
    must also run against checkouts that predate it (see the module doc).
    """
    if bf16:
        return torch.autocast('cpu', dtype=torch.bfloat16)
    return contextlib.nullcontext()


class TimedStep:
    """A callable doing one unit of work (see the module doc); build once,
    call once per timed run.

    Args:
        config (str): Config file.
        mode (str): ``'infer'`` or ``'train'``.
        part (str): ``'backbone'`` or ``'detector'`` (``'train'`` needs
            ``'detector'``).
        batch (int): Images per call.
        shape (tuple[int, int]): Image size (H, W).
        bf16 (bool): Run the forward (and loss) under bf16 autocast.
        channels_last (bool): Convert the model's 4-D weights and the input
            images to ``torch.channels_last``.
        cfg_options (dict, optional): Config overrides.
        backend (str): ``'pytorch'`` or ``'onnxruntime'`` (inference only,
            no bf16 or channels-last).
    """

    def __init__(self,
                 config: str,
                 mode: str = 'infer',
                 part: str = 'detector',
                 batch: int = 1,
                 shape: Tuple[int, int] = (640, 640),
                 bf16: bool = False,
                 channels_last: bool = False,
                 cfg_options: Optional[dict] = None,
                 backend: str = 'pytorch') -> None:
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        if backend not in BACKENDS:
            raise ValueError(f'backend must be one of {BACKENDS}, got '
                             f'{backend!r}')
        if backend == 'onnxruntime' and (mode != 'infer' or bf16
                                         or channels_last):
            raise ValueError('the ONNX Runtime backend times inference of '
                             'the exported graph: no train mode, bf16 or '
                             'channels-last')
        if mode == 'train' and part != 'detector':
            raise ValueError("mode 'train' times the whole detector; use "
                             "part 'detector'")
        self.mode, self.bf16 = mode, bf16
        model = build_model(config, part, cfg_options)
        self.params = sum(p.numel() for p in model.parameters())
        self.inputs, self.samples = make_inputs(
            model, part, batch, *shape, num_gts=3 if mode == 'train' else 0)
        if channels_last:
            model.to(memory_format=torch.channels_last)
            self.inputs = self.inputs.contiguous(
                memory_format=torch.channels_last)
        self.model = model
        runner = (OnnxRuntimeRunner
                  if backend == 'onnxruntime' else PytorchRunner)
        self.infer = runner(model, self.inputs, self.samples)
        self.optim_wrapper = None
        if mode == 'train':
            model.train()
            logger = MMLogger.get_current_instance()
            level = logger.level
            logger.setLevel(logging.WARNING)  # one line per parameter
            try:
                self.optim_wrapper = build_optim_wrapper(
                    model, model.cfg.optim_wrapper)
            finally:
                logger.setLevel(level)

    def __call__(self):
        if self.mode == 'train':
            with autocast(self.bf16):
                losses = self.model.loss(self.inputs, self.samples)
            loss, _ = self.model.parse_losses(losses)
            self.optim_wrapper.update_params(loss)
            return loss.detach()
        with autocast(self.bf16):
            return self.infer()


class PeakRSS:
    """This process's resident set size (RSS) while the ``with`` block runs:
    ``baseline`` (bytes) on construction, and ``peak`` (bytes), the largest
    RSS sampled every ``interval`` seconds by a background thread (psutil).
    """

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.process = psutil.Process()
        self.baseline = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> 'PeakRSS':
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    def stats(self) -> Dict[str, float]:
        """``peak_rss_growth_mib`` (peak so far minus the baseline),
        ``baseline_rss_mib`` and ``max_rss_mib``, the process's lifetime
        peak (``getrusage`` ``ru_maxrss``, includes building the model)."""
        return dict(
            peak_rss_growth_mib=(self.peak - self.baseline) / 2**20,
            baseline_rss_mib=self.baseline / 2**20,
            max_rss_mib=resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024)


def benchmark_step(config: str, logger: logging.Logger, warmup: int = 5,
                   iters: int = 20, **step_kwargs) -> dict:
    """Time a :class:`TimedStep` of ``config`` (``warmup`` untimed calls,
    then ``iters`` timed ones) and the peak RSS growth over all calls,
    logging progress and results.

    Args:
        **step_kwargs: ``mode``, ``part``, ``batch``, ``shape``, ``bf16``,
            ``channels_last``, ``cfg_options``, ``backend`` of
            :class:`TimedStep`.

    Returns:
        dict: :func:`rtdetr_zoo.analysis.latency_stats`, ``params`` and
        :meth:`PeakRSS.stats`.
    """
    # Not imported at the top: the worker runs against older checkouts.
    from rtdetr_zoo.analysis.benchmark import log_setting, run_benchmark
    step = TimedStep(config, **step_kwargs)
    settings = [step_kwargs.get('part', 'detector'),
                step_kwargs.get('backend', 'pytorch'), step.mode] + [
        name for name, on in (('bf16', step.bf16),
                              ('channels-last',
                               step_kwargs.get('channels_last')))
        if on]
    log_setting(logger, config, settings, step.params,
                step_kwargs.get('shape', (640, 640)), step.inputs)
    batch = step_kwargs.get('batch', 1)
    with PeakRSS() as rss:
        stats = run_benchmark(step, warmup, iters, batch, logger)
    stats.update(rss.stats(), params=step.params)
    logger.info(
        f'memory: peak RSS growth {stats["peak_rss_growth_mib"]:.0f} MiB '
        f'over {stats["baseline_rss_mib"]:.0f} MiB before the first run '
        f'(psutil RSS sampled every 2 ms); process peak RSS '
        f'{stats["max_rss_mib"]:.0f} MiB (getrusage ru_maxrss)')
    return stats


def profile_step(config: str, logger: logging.Logger, row_limit: int = 25,
                 **step_kwargs) -> str:
    """``torch.profiler`` table of one call of a :class:`TimedStep` (after
    two untimed calls), sorted by self CPU time, plus the number of Python
    function calls of that call (``cProfile``).

    Returns:
        str: the table and the call count, also logged.
    """
    import cProfile
    import pstats

    from torch.profiler import ProfilerActivity, profile
    step = TimedStep(config, **step_kwargs)
    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        step()
        seconds = time.perf_counter() - start
    table = prof.key_averages().table(sort_by='self_cpu_time_total',
                                      row_limit=row_limit)
    python = cProfile.Profile()
    python.runcall(step)
    calls = pstats.Stats(python).total_calls
    text = (f'{config} {step_kwargs}: {seconds * 1000:.0f} ms under the '
            f'profiler, {calls:,} Python function calls per call\n{table}')
    logger.info(text)
    return text


def reply(**message) -> None:
    """Write one protocol line to stdout."""
    sys.stdout.write(PROTOCOL_PREFIX + json.dumps(message) + '\n')
    sys.stdout.flush()


def serve(step: TimedStep) -> None:
    """Worker loop: answer commands read from stdin, one per line.

    First reply: ``{"ready", "params", "threads", "package"}`` (the folder
    of the ``rtdetr_zoo`` being timed). ``run`` -> ``{"seconds": ...}`` (one
    timed call of ``step``); ``memory`` -> :meth:`PeakRSS.stats` over all
    runs so far; ``count`` -> the host work of one call
    (:func:`count_host_work`); ``quit`` -> exit.
    """
    with PeakRSS() as rss:
        reply(ready=True, params=step.params,
              threads=torch.get_num_threads(),
              package=osp.dirname(osp.realpath(rtdetr_zoo.__file__)))
        for line in sys.stdin:
            command = line.strip()
            if command == 'run':
                start = time.perf_counter()
                step()
                reply(seconds=time.perf_counter() - start)
            elif command == 'memory':
                reply(**rss.stats())
            elif command == 'count':
                reply(**count_host_work(step))
            elif command == 'quit':
                break
            else:
                reply(error=f'unknown command {command!r}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('config')
    parser.add_argument('--mode', choices=MODES, default='infer')
    parser.add_argument('--part', choices=PARTS, default='detector')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--shape', type=int, nargs=2, default=[640, 640])
    parser.add_argument('--bf16', action='store_true')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--backend', choices=BACKENDS, default='pytorch')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--cfg-options', default='{}',
                        help='config overrides as a JSON object')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    serve(TimedStep(args.config, args.mode, args.part, args.batch,
                    tuple(args.shape), args.bf16, args.channels_last,
                    json.loads(args.cfg_options) or None, args.backend))


if __name__ == '__main__':
    main()
