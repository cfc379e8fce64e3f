"""Mean and spread over seeds of convergence runs
(tools/analysis/seed_summary.py)."""
import json

import pytest

from tools.analysis.seed_summary import main, seed_runs, seed_summary


def _run(work_dir, evals, loss):
    """A finished tools/train.py work dir with ``evals`` ((epoch, mAP,
    AP50) fractions) and a last-epoch loss."""
    run = work_dir / '20261202_120000'
    (run / 'vis_data').mkdir(parents=True)
    records = [dict(loss=9.0, epoch=1, iter=1),
               dict(loss=loss, epoch=2, iter=2)]
    records += [{'coco/bbox_mAP': m, 'coco/bbox_mAP_50': a, 'step': e}
                for e, m, a in evals]
    (run / 'vis_data' / 'scalars.json').write_text(
        '\n'.join(json.dumps(r) for r in records) + '\n')


def test_summary_over_seeds(tmp_path, capsys):
    base = tmp_path / 'deim_raccoon'
    _run(base, [(5, 0.10, 0.30), (10, 0.20, 0.40)], 4.0)
    _run(tmp_path / 'deim_raccoon_seed1', [(5, 0.12, 0.32), (10, 0.30, 0.50)],
         6.0)
    _run(tmp_path / 'deim_raccoon_seed2', [(5, 0.14, 0.34)], 5.0)
    # Not a seed of this config, and an unfinished run.
    _run(tmp_path / 'deim_raccoon_seedless', [(5, 0.9, 0.9)], 1.0)
    (tmp_path / 'deim_raccoon_seed3').mkdir()
    assert sorted(seed_runs(str(base))) == [0, 1, 2]
    lines = seed_summary([str(base)])
    assert lines[2:] == [
        '| `deim_raccoon` | 5 | 3 | 12.0 ± 2.0 (10.0-14.0) | '
        '32.0 ± 2.0 (30.0-34.0) | 5.00 |',
        '| `deim_raccoon` | 10 | 2 | 25.0 ± 7.1 (20.0-30.0) | '
        '45.0 ± 7.1 (40.0-50.0) | 5.00 |',
    ]
    main([str(base)])
    assert capsys.readouterr().out.splitlines()[2:] == lines[2:]


def test_missing_runs_are_named(tmp_path):
    with pytest.raises(SystemExit, match='no finished convergence run in '
                       '.*missing'):
        main([str(tmp_path / 'missing')])
