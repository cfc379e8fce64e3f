"""The same unit of work (a :class:`~tools.analysis.timed_step.TimedStep`)
with the package of the working tree and of another git revision, timed
alternately or counted, each in its own worker process.

The revision is checked out in a temporary ``git worktree`` (removed
afterwards). Each worker runs this checkout's ``tools/analysis/
timed_step.py`` with ``PYTHONPATH=<tree>/projects``, so that it imports the
``rtdetr_zoo`` of its tree, builds the config (a path relative to the
repository root) from that tree, and answers commands on stdin
(:func:`tools.analysis.timed_step.serve`). The workers time themselves:
the pipe adds nothing to the figures.
"""
import contextlib
import json
import logging
import os
import os.path as osp
import subprocess
import sys
import tempfile
from typing import Dict, Iterator, List, Optional

from rtdetr_zoo.analysis import latency_stats, time_alternately
from tools.analysis import timed_step
from tools.analysis.timed_step import (PROTOCOL_PREFIX, TimedStep,
                                       count_host_work)

# The checkout this file belongs to.
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
WORKING_TREE = 'working tree'


def git_worktree(repo: str, rev: str, path: str) -> str:
    """Check out ``rev`` of the git repository ``repo`` at ``path`` (a
    detached ``git worktree``).

    Returns:
        str: the commit hash of ``rev``.

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


def worker_args(step_kwargs: dict, threads: Optional[int]) -> List[str]:
    """Command-line arguments of a :mod:`~tools.analysis.timed_step`
    worker for ``step_kwargs`` of
    :class:`~tools.analysis.timed_step.TimedStep`."""
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


class Worker:
    """A :mod:`~tools.analysis.timed_step` worker process on the package of
    ``tree`` (a repository checkout), building ``config`` (relative to
    ``tree``); the constructor waits until it is ready and keeps its
    ``params`` and ``package`` (the folder of the ``rtdetr_zoo`` it
    imported)."""

    def __init__(self, tree: str, config: str, args: List[str],
                 threads: Optional[int] = None) -> None:
        self.tree = tree
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [osp.join(tree, 'projects')] +
            [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep)
             if p]))
        if threads:
            env['OMP_NUM_THREADS'] = str(threads)
        command = [sys.executable, timed_step.__file__,
                   osp.join(tree, config)] + args
        self.process = subprocess.Popen(
            command, cwd=tree, env=env, text=True, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE)
        ready = self.read_reply()
        self.params, self.package = ready['params'], ready['package']

    def read_reply(self) -> dict:
        """The next protocol line of the worker, decoded.

        Raises:
            RuntimeError: the worker answered an error or exited.
        """
        for line in self.process.stdout:
            if line.startswith(PROTOCOL_PREFIX):
                message = json.loads(line[len(PROTOCOL_PREFIX):])
                if 'error' in message:
                    raise RuntimeError(f'{self.tree}: {message["error"]}')
                return message
        raise RuntimeError(
            f'the benchmark worker for {self.tree} exited with code '
            f'{self.process.wait()} (its error is printed above)')

    def ask(self, command: str) -> dict:
        """Send ``command`` (``run``, ``memory``, ``count``) and return the
        reply."""
        self.process.stdin.write(command + '\n')
        self.process.stdin.flush()
        return self.read_reply()

    def close(self) -> None:
        """Tell the worker to quit and wait for it."""
        if self.process.poll() is None:
            self.process.stdin.write('quit\n')
            self.process.stdin.close()
            self.process.wait()


@contextlib.contextmanager
def revision_workers(config: str,
                     rev: str,
                     args: Dict[str, List[str]],
                     logger: logging.Logger,
                     repo: Optional[str] = None,
                     threads: Optional[int] = None) -> Iterator[dict]:
    """:class:`Worker` processes for the working tree and for git revision
    ``rev`` (checked out in a temporary ``git worktree``, removed
    afterwards), each building ``config`` (a path relative to the repository
    root) from its tree.

    Args:
        args (dict): ``'working tree'`` and ``rev`` -> the worker's
            command-line arguments (:func:`worker_args`).

    Yields:
        dict: ``'working tree'`` and ``rev`` -> the ready :class:`Worker`.

    Raises:
        FileNotFoundError: ``config`` is missing in either tree.
        ValueError: ``rev`` is not a revision of ``repo``.
    """
    repo = repo or REPO_ROOT
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
            for name, root in ((WORKING_TREE, repo), (rev, tree)):
                if not osp.isfile(osp.join(root, config)):
                    raise FileNotFoundError(
                        f'config {config} does not exist at {name}')
                workers[name] = Worker(root, config, args[name], threads)
                logger.info(f'{name}: {workers[name].params:,} params, '
                            f'rtdetr_zoo of {workers[name].package}')
            yield workers
        finally:
            for worker in workers.values():
                worker.close()
            subprocess.run(['git', '-C', repo, 'worktree', 'remove',
                            '--force', tree], capture_output=True)


def compare_revisions(config: str,
                      rev: str,
                      logger: logging.Logger,
                      repo: Optional[str] = None,
                      warmup: int = 3,
                      iters: int = 10,
                      threads: Optional[int] = None,
                      baseline_kwargs: Optional[dict] = None,
                      **step_kwargs) -> dict:
    """Time ``config``'s model with the package of the working tree and of
    git revision ``rev``, alternately (working tree, ``rev``, working tree,
    ...), so that a change of machine load affects both alike.

    Args:
        config (str): Config path relative to the repository root.
        rev (str): Git revision to compare with (e.g. ``HEAD~3``, a hash).
        logger (logging.Logger): Where the progress and results go.
        repo (str, optional): Repository root (default: this checkout).
        warmup (int): Untimed runs of each first.
        iters (int): Timed runs of each.
        threads (int, optional): CPU threads of each worker.
        baseline_kwargs (dict, optional): ``step_kwargs`` overridden for
            ``rev`` only, e.g. ``dict(bf16=False)`` to time the working
            tree's bf16 against the revision's float32.
        **step_kwargs: ``mode``, ``part``, ``batch``, ``shape``, ``bf16``,
            ``channels_last``, ``cfg_options``, ``backend`` of
            :class:`~tools.analysis.timed_step.TimedStep`.

    Returns:
        dict: ``'working tree'`` and ``rev``, each with the statistics of
        :func:`rtdetr_zoo.analysis.latency_stats`, ``params``, ``package``
        (the ``rtdetr_zoo`` folder its worker imported) and the worker's
        memory (:meth:`~tools.analysis.timed_step.PeakRSS.stats`), plus
        ``speedup`` (``rev``'s median / the working tree's median).
    """
    args = {
        WORKING_TREE: worker_args(step_kwargs, threads),
        rev: worker_args(dict(step_kwargs, **(baseline_kwargs or {})),
                         threads)
    }
    with revision_workers(config, rev, args, logger, repo,
                          threads) as workers:
        times = time_alternately(
            {name: lambda worker=worker: worker.ask('run')['seconds']
             for name, worker in workers.items()}, warmup, iters, logger)
        results = {}
        for name, worker in workers.items():
            results[name] = dict(
                latency_stats(times[name], step_kwargs.get('batch', 1)),
                params=worker.params, package=worker.package,
                **worker.ask('memory'))
    results['speedup'] = (results[rev]['median_ms'] /
                          results[WORKING_TREE]['median_ms'])
    for name in (rev, WORKING_TREE):
        r = results[name]
        logger.info(f'{name}: median {r["median_ms"]:.1f} ms, p90 '
                    f'{r["p90_ms"]:.1f} ms, peak RSS growth '
                    f'{r["peak_rss_growth_mib"]:.0f} MiB')
    logger.info(f'speed-up of the working tree over {rev}: '
                f'{results["speedup"]:.3f}x (ratio of medians, {iters} '
                f'alternating runs each)')
    return results


def count_ops(config: str,
              logger: logging.Logger,
              rev: Optional[str] = None,
              repo: Optional[str] = None,
              top: int = 12,
              **step_kwargs) -> dict:
    """Host-side work of one unit of work of ``config``'s model: aten calls
    and synchronisation points
    (:func:`~tools.analysis.timed_step.count_host_work`, the measure of
    ``../shared/gpu/opcount.py``), the GPU time's driver at real-time model
    sizes, counted on the CPU.

    With ``rev``, the same unit of work of git revision ``rev`` is counted
    too (a worker process on a temporary ``git worktree``, as
    :func:`compare_revisions` does), with the ratio and the operators whose
    counts changed most.

    Args:
        config (str): Config file (relative to the repository root with
            ``rev``).
        logger (logging.Logger): Where the counts go.
        rev (str, optional): Git revision to compare with.
        repo (str, optional): Repository root (default: this checkout).
        top (int): Operators listed.
        **step_kwargs: of :class:`~tools.analysis.timed_step.TimedStep`
            (``mode``, ``batch``, ``shape``, ...).

    Returns:
        dict: per tree (``'working tree'`` and ``rev``), the counts of
        :func:`~tools.analysis.timed_step.count_host_work`.
    """
    if rev is None:
        results = {WORKING_TREE: count_host_work(
            TimedStep(config, **step_kwargs))}
    else:
        args = worker_args(step_kwargs, None)
        with revision_workers(config, rev, {WORKING_TREE: args, rev: args},
                              logger, repo) as workers:
            results = {name: worker.ask('count')
                       for name, worker in workers.items()}
    setting = ', '.join(f'{k}={v}' for k, v in step_kwargs.items()
                        if v not in (None, False))
    for name, counts in results.items():
        logger.info(f'{name} [{setting}]: {counts["aten_calls"]:,} aten '
                    f'calls, {counts["syncs"]} syncs')
    if rev is not None:
        new, old = results[WORKING_TREE], results[rev]
        logger.info(f'aten calls: working tree / {rev} = '
                    f'{new["aten_calls"] / old["aten_calls"]:.2f}; '
                    f'syncs {old["syncs"]} -> {new["syncs"]}')
        changes = sorted(
            set(new['ops']) | set(old['ops']),
            key=lambda op: -abs(new['ops'].get(op, 0) -
                                old['ops'].get(op, 0)))[:top]
        for op in changes:
            logger.info(f'    {op:34s} {rev} {old["ops"].get(op, 0):6d}  '
                        f'working tree {new["ops"].get(op, 0):6d}')
    else:
        for op, calls in list(results[WORKING_TREE]['ops'].items())[:top]:
            logger.info(f'    {op:34s} {calls:6d}')
    return results
