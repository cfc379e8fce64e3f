"""Evaluate a checkpoint (COCO bbox mAP by default).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PRED.pkl]
        [--show-dir DIR] [--bf16] [--cfg-options key=value ...]

``--bf16`` evaluates under bfloat16 autocast (``rtdetr_zoo.apis.
enable_bf16_testing``); the heads and box arithmetic stay float32.
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS

from mmdet.utils import setup_cache_size_limit_of_dynamo
from rtdetr_zoo.apis import enable_bf16_testing
from rtdetr_zoo.engine import setup_cpu_distributed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('config', help='test config file')
    parser.add_argument('checkpoint', help='checkpoint file or URL')
    parser.add_argument('--work-dir', help='where the evaluation log goes')
    parser.add_argument('--out', help='dump raw predictions to a .pkl file')
    parser.add_argument('--show-dir', help='draw predictions into this '
                        'folder (relative to the work dir)')
    parser.add_argument('--bf16', action='store_true',
                        help='evaluate under bfloat16 autocast')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()
    for path, what in ((args.config, 'config'),
                       (args.checkpoint, 'checkpoint')):
        # A checkpoint may also be a URL (e.g. an official release).
        if not osp.isfile(path) and not (what == 'checkpoint'
                                         and '://' in path):
            raise SystemExit(f'error: {what} file not found: {path}')
    setup_cache_size_limit_of_dynamo()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.bf16:
        enable_bf16_testing(cfg)
    if args.show_dir:
        vis = cfg.default_hooks.visualization
        vis.draw = True
        vis.test_out_dir = args.show_dir
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit('error: --out must be a .pkl or .pickle file')
        cfg.test_evaluator = [
            *(cfg.test_evaluator if isinstance(cfg.test_evaluator, list)
              else [cfg.test_evaluator]),
            dict(type='DumpDetResults', out_file_path=args.out)
        ]
    if args.launcher != 'none':
        setup_cpu_distributed(cfg)
    # Honours the config's runner_type (RTDETRRunner in
    # configs/_base_/default_runtime.py), as mmdet's tools/train.py does.
    runner = RUNNERS.build(cfg)
    runner.test()


if __name__ == '__main__':
    main()
