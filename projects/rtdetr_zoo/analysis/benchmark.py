"""Latency, throughput and memory of a config's model on the CPU:
inference or a training step, eager (fp32 or bf16 autocast, optionally
channels-last) or ONNX Runtime, and the same measurement against another git
revision.

The PyTorch unit of work is a
:class:`~rtdetr_zoo.analysis.timed_step.TimedStep`: the model is built from
the config by :func:`rtdetr_zoo.apis.load_detector` (random weights;
``init_cfg`` checkpoints are not loaded); mode ``'infer'`` times
``model.predict(inputs, data_samples)`` (backbone, neck, decoder and
post-processing; or ``model.backbone(images)`` for part ``'backbone'``)
under ``torch.no_grad`` on a pre-processed batch of random images, mode
``'train'`` times forward + loss + backward + the config's optimizer step
on random images with random boxes.

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

:func:`compare_revisions` times the working tree against a git revision
(checked out in a temporary ``git worktree``), alternately, each in its own
process; :func:`profile_step` prints a ``torch.profiler`` table of one unit
of work.
"""
import contextlib
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import psutil
import torch

from . import timed_step
from .timed_step import (PARTS, PROTOCOL_PREFIX,  # noqa: F401
                         OnnxRuntimeRunner, PeakRSS, TimedStep, build_model,
                         count_host_work, make_inputs)


def input_shape(shape):
    """``[S]`` -> (S, S); ``[H, W]`` -> (H, W)."""
    return (shape[0], shape[0]) if len(shape) == 1 else tuple(shape)


class PytorchRunner:
    """Eager PyTorch on the CPU, ``torch.no_grad``."""

    def __init__(self, model, inputs, samples):
        self.model, self.inputs, self.samples = model, inputs, samples

    def __call__(self):
        with torch.no_grad():
            if self.samples is None:
                return self.model(self.inputs)
            return self.model.predict(self.inputs, self.samples)


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


def timed(call):
    """``call`` wrapped to return the seconds it took."""

    def run():
        start = time.perf_counter()
        call()
        return time.perf_counter() - start
    return run


def time_alternately(calls, warmup, iters, logger):
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
              warmup=5, iters=20, backend='pytorch', cfg_options=None,
              mode='infer', bf16=False, channels_last=False):
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
        mode (str): ``'infer'`` or ``'train'`` (PyTorch only; see
            :class:`~rtdetr_zoo.analysis.timed_step.TimedStep`).
        bf16 (bool): bf16 autocast (PyTorch only).
        channels_last (bool): Channels-last weights and inputs (PyTorch
            only).

    Returns:
        dict: the statistics of :func:`run_benchmark` plus ``params``.
    """
    height, width = shape
    runner = TimedStep(config, mode, part, batch, shape, bf16, channels_last,
                       cfg_options, backend)
    params, inputs = runner.params, runner.inputs
    settings = [part, backend, mode] + [
        name for name, on in (('bf16', bf16), ('channels-last', channels_last))
        if on]
    logger.info(
        f'{config} [{", ".join(settings)}]: {params:,} params, {height}x'
        f'{width} images -> input tensor '
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


def profile_step(config, logger, row_limit=25, **step_kwargs):
    """``torch.profiler`` table of one call of a
    :class:`~rtdetr_zoo.analysis.timed_step.TimedStep` (after two untimed
    calls), sorted by self CPU time, plus the number of Python function
    calls of that call (``cProfile``).

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


def _spawn_worker(tree, config, worker_args, threads):
    """A :mod:`timed_step` worker process on the package of ``tree`` (a
    repository checkout), with its config; waits for it to be ready."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [osp.join(tree, 'projects')] +
        [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
    command = [sys.executable, timed_step.__file__,
               osp.join(tree, config)] + worker_args
    proc = subprocess.Popen(command, cwd=tree, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    proc.tree = tree
    ready = _read_reply(proc)
    proc.params = ready['params']
    return proc


def _read_reply(proc):
    for line in proc.stdout:
        if line.startswith(PROTOCOL_PREFIX):
            message = json.loads(line[len(PROTOCOL_PREFIX):])
            if 'error' in message:
                raise RuntimeError(f'{proc.tree}: {message["error"]}')
            return message
    raise RuntimeError(
        f'the benchmark worker for {proc.tree} exited with code '
        f'{proc.wait()} (its error is printed above)')


def _ask(proc, command):
    proc.stdin.write(command + '\n')
    proc.stdin.flush()
    return _read_reply(proc)


def git_worktree(repo, rev, path):
    """Check out ``rev`` of the git repository ``repo`` at ``path`` (a
    detached ``git worktree``).

    Raises:
        ValueError: ``rev`` is not a revision of ``repo``.
    """
    found = subprocess.run(
        ['git', '-C', repo, 'rev-parse', '--verify', '--quiet',
         f'{rev}^{{commit}}'], capture_output=True, text=True)
    if found.returncode != 0:
        raise ValueError(f'--compare: {rev!r} is not a revision of the git '
                         f'repository {repo}')
    subprocess.run(['git', '-C', repo, 'worktree', 'add', '--detach', path,
                    found.stdout.strip()], check=True, capture_output=True)
    return found.stdout.strip()


def _worker_args(step_kwargs, threads):
    """Command-line arguments of a :mod:`timed_step` worker."""
    args = ['--mode', step_kwargs.get('mode', 'infer'),
            '--part', step_kwargs.get('part', 'detector'),
            '--batch', str(step_kwargs.get('batch', 1)),
            '--shape', *map(str, step_kwargs.get('shape', (640, 640))),
            '--cfg-options', json.dumps(step_kwargs.get('cfg_options') or {})]
    args += ['--bf16'] * bool(step_kwargs.get('bf16'))
    args += ['--channels-last'] * bool(step_kwargs.get('channels_last'))
    args += ['--backend', step_kwargs.get('backend', 'pytorch')]
    if threads:
        args += ['--threads', str(threads)]
    return args


@contextlib.contextmanager
def revision_workers(config, rev, worker_args, logger, repo=None,
                     threads=None):
    """:mod:`timed_step` worker processes for the working tree and for git
    revision ``rev`` (checked out in a temporary ``git worktree``, removed
    afterwards), each importing the ``rtdetr_zoo`` of its tree and building
    ``config`` (a path relative to the repository root) from that tree.

    Args:
        worker_args (dict): ``'working tree'`` and ``rev`` -> the worker's
            command-line arguments (:func:`_worker_args`).

    Yields:
        dict: ``'working tree'`` and ``rev`` -> the ready worker process.
    """
    repo = repo or osp.dirname(osp.dirname(osp.dirname(
        osp.dirname(osp.abspath(__file__)))))
    if osp.isabs(config):
        config = osp.relpath(config, repo)
    if not osp.isfile(osp.join(repo, config)):
        raise FileNotFoundError(f'config file not found: {config}')
    with tempfile.TemporaryDirectory() as tmp:
        tree = osp.join(tmp, 'rev')
        commit = git_worktree(repo, rev, tree)
        logger.info(f'{rev} ({commit[:10]}) checked out in {tree}')
        workers = {}
        try:
            for name, root in (('working tree', repo), (rev, tree)):
                if not osp.isfile(osp.join(root, config)):
                    raise FileNotFoundError(
                        f'config {config} does not exist at {name}')
                workers[name] = _spawn_worker(root, config,
                                              worker_args[name], threads)
                logger.info(f'{name}: {workers[name].params:,} params')
            yield workers
        finally:
            for proc in workers.values():
                if proc.poll() is None:
                    proc.stdin.write('quit\n')
                    proc.stdin.close()
                    proc.wait()
            subprocess.run(['git', '-C', repo, 'worktree', 'remove',
                            '--force', tree], capture_output=True)


def compare_revisions(config, rev, logger, repo=None, warmup=3, iters=10,
                      threads=None, baseline_kwargs=None, **step_kwargs):
    """Time ``config``'s model with the package of the working tree and of
    git revision ``rev``, alternately, each in its own worker process.

    ``rev`` is checked out in a temporary ``git worktree`` (removed
    afterwards); each worker imports the ``rtdetr_zoo`` of its tree and
    builds ``config`` (a path relative to the repository root) from that
    tree. The runs alternate (working tree, ``rev``, working tree, ...) so
    that a change of machine load affects both alike.

    Args:
        config (str): Config path relative to the repository root.
        rev (str): Git revision to compare with (e.g. ``HEAD~3``, a hash).
        logger (logging.Logger): Where the progress and results go.
        repo (str, optional): Repository root (default: the one this
            package lives in).
        warmup (int): Untimed runs of each first.
        iters (int): Timed runs of each.
        threads (int, optional): CPU threads of each worker.
        baseline_kwargs (dict, optional): ``step_kwargs`` overridden for
            ``rev`` only, e.g. ``dict(bf16=False)`` to time the working
            tree's bf16 against the revision's float32.
        **step_kwargs: ``mode``, ``part``, ``batch``, ``shape``, ``bf16``,
            ``channels_last``, ``cfg_options``, ``backend`` of
            :class:`~rtdetr_zoo.analysis.timed_step.TimedStep`.

    Returns:
        dict: ``'working tree'`` and ``rev``, each with the statistics of
        :func:`latency_stats`, ``params`` and the worker's memory
        (``peak_rss_growth_mib`` ...), plus ``speedup`` (``rev``'s median /
        the working tree's median).
    """
    worker_args = {
        'working tree': _worker_args(step_kwargs, threads),
        rev: _worker_args(dict(step_kwargs, **(baseline_kwargs or {})),
                          threads)
    }
    with revision_workers(config, rev, worker_args, logger, repo,
                          threads) as workers:
        # The workers time themselves (no pipe overhead in the figure).
        times = time_alternately(
            {name: lambda proc=proc: _ask(proc, 'run')['seconds']
             for name, proc in workers.items()}, warmup, iters, logger)
        results = {}
        for name, proc in workers.items():
            results[name] = dict(
                latency_stats(times[name], step_kwargs.get('batch', 1)),
                params=proc.params, **_ask(proc, 'memory'))
    results['speedup'] = (results[rev]['median_ms'] /
                          results['working tree']['median_ms'])
    for name in (rev, 'working tree'):
        r = results[name]
        logger.info(f'{name}: median {r["median_ms"]:.1f} ms, p90 '
                    f'{r["p90_ms"]:.1f} ms, peak RSS growth '
                    f'{r["peak_rss_growth_mib"]:.0f} MiB')
    logger.info(f'speed-up of the working tree over {rev}: '
                f'{results["speedup"]:.3f}x (ratio of medians, {iters} '
                f'alternating runs each)')
    return results


def count_ops(config, logger, rev=None, repo=None, top=12, **step_kwargs):
    """Host-side work of one unit of work of ``config``'s model: aten calls
    and synchronisation points (:func:`~rtdetr_zoo.analysis.timed_step.
    count_host_work`, the measure of ``../shared/gpu/opcount.py``), the GPU
    time's driver at real-time model sizes, counted on the CPU.

    With ``rev``, the same unit of work of git revision ``rev`` is counted
    too (a worker process on a temporary ``git worktree``, as
    :func:`compare_revisions` does), with the ratio and the operators whose
    counts changed most.

    Args:
        config (str): Config file (relative to the repository root with
            ``rev``).
        logger (logging.Logger): Where the counts go.
        rev (str, optional): Git revision to compare with.
        top (int): Operators listed.
        **step_kwargs: of :class:`~rtdetr_zoo.analysis.timed_step.TimedStep`
            (``mode``, ``batch``, ``shape``, ...).

    Returns:
        dict: per tree (``'working tree'`` and ``rev``), the counts of
        :func:`count_host_work`.
    """
    if rev is None:
        results = {'working tree': count_host_work(
            TimedStep(config, **step_kwargs))}
    else:
        worker_args = _worker_args(step_kwargs, None)
        with revision_workers(config, rev, {'working tree': worker_args,
                                            rev: worker_args},
                              logger, repo) as workers:
            results = {name: _ask(proc, 'count')
                       for name, proc in workers.items()}
    setting = ', '.join(f'{k}={v}' for k, v in step_kwargs.items()
                        if v not in (None, False))
    for name, counts in results.items():
        logger.info(f'{name} [{setting}]: {counts["aten_calls"]:,} aten '
                    f'calls, {counts["syncs"]} syncs')
    if rev is not None:
        new, old = results['working tree'], results[rev]
        logger.info(f'aten calls: working tree / {rev} = '
                    f'{new["aten_calls"] / old["aten_calls"]:.2f}; '
                    f'syncs {old["syncs"]} -> {new["syncs"]}')
        changes = sorted(set(new['ops']) | set(old['ops']), key=lambda op: -abs(
            new['ops'].get(op, 0) - old['ops'].get(op, 0)))[:top]
        for op in changes:
            logger.info(f'    {op:34s} {rev} {old["ops"].get(op, 0):6d}  '
                        f'working tree {new["ops"].get(op, 0):6d}')
    else:
        for op, calls in list(results['working tree']['ops'].items())[:top]:
            logger.info(f'    {op:34s} {calls:6d}')
    return results


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
