"""Mean and spread over random seeds of convergence runs, at each
evaluation (markdown), for comparing recipes on the raccoon data.

    SEEDS="0 1 2" bash tools/analysis/convergence_runs.sh CONFIG_A CONFIG_B
    python tools/analysis/seed_summary.py \
        work_dirs/convergence/rtdetrv2_r18vd_raccoon \
        work_dirs/convergence/deim_rtdetrv2_r18vd_raccoon

Each argument is the seed-0 work dir of a config; its other seeds are the
``<dir>_seed<N>`` folders beside it (``convergence_runs.sh``'s names). One
row per config and evaluated epoch: the number of seeds, mean, sample
standard deviation, min and max of the COCO bbox mAP and AP50 (%), and the
mean training loss of the last epoch.
"""
import argparse
import glob
import os.path as osp
import statistics
import sys
from typing import Dict, List, Optional, Sequence

# The repository root, so that tools.analysis imports (see its __init__).
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
from tools.analysis.model_zoo_table import \
    read_convergence_run  # noqa: E402


def seed_runs(work_dir: str) -> Dict[int, dict]:
    """``{seed: read_convergence_run(...)}`` of ``work_dir`` (seed 0) and
    its ``<work_dir>_seed<N>`` siblings; unfinished runs are left out."""
    dirs = {0: work_dir}
    for path in glob.glob(glob.escape(work_dir) + '_seed*'):
        suffix = path[len(work_dir) + len('_seed'):]
        if suffix.isdigit():
            dirs[int(suffix)] = path
    runs = {seed: read_convergence_run(path)
            for seed, path in sorted(dirs.items())}
    return {seed: run for seed, run in runs.items() if run is not None}


def _spread(values: Sequence[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return (f'{statistics.fmean(values):.1f} ± {std:.1f} '
            f'({min(values):.1f}-{max(values):.1f})')


def seed_summary(work_dirs: Sequence[str]) -> List[str]:
    """Markdown table lines for the configs' seed runs in ``work_dirs``.

    Raises:
        ValueError: A work dir without any finished run.
    """
    lines = ['| config | epoch | seeds | mAP mean ± std (min-max) | '
             'AP50 mean ± std (min-max) | last-epoch loss (mean) |',
             '|---|---|---|---|---|---|']
    for work_dir in work_dirs:
        runs = seed_runs(work_dir)
        if not runs:
            raise ValueError(f'no finished convergence run in {work_dir} '
                             f'(nor in {work_dir}_seed<N>)')
        name = work_dir.rstrip('/').rsplit('/', 1)[-1]
        epochs = sorted({epoch for run in runs.values()
                         for epoch, _, _ in run['evals']})
        loss = statistics.fmean(run['loss'] for run in runs.values())
        for epoch in epochs:
            evals = [(m, a) for run in runs.values()
                     for e, m, a in run['evals'] if e == epoch]
            lines.append(
                f'| `{name}` | {epoch} | {len(evals)} | '
                f'{_spread([100 * m for m, _ in evals])} | '
                f'{_spread([100 * a for _, a in evals])} | '
                f'{loss:.2f} |')
    return lines


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dirs', nargs='+',
                        help='seed-0 work dir of each config')
    args = parser.parse_args(argv)
    try:
        lines = seed_summary(args.work_dirs)
    except ValueError as error:
        sys.exit(f'error: {error}')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
