"""Train a detector with MMEngine's Runner.

    python tools/train.py configs/rtdetr_r18vd_raccoon.py [--work-dir DIR]
        [--resume [CHECKPOINT]] [--amp] [--cfg-options key=value ...]
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS

from mmdet.utils import setup_cache_size_limit_of_dynamo
from rtdetr_zoo.engine import setup_cpu_distributed

# --amp keeps the non-finite guard of rtdetr_zoo's default optim wrapper; both
# AMP wrappers are mmengine's AmpOptimWrapper with bfloat16 autocast on a CPU.
AMP_WRAPPERS = {'NonFiniteGuardOptimWrapper': 'NonFiniteGuardAmpOptimWrapper'}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('config', help='train config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision: float16 with loss '
                        'scaling on a GPU, bfloat16 autocast on a CPU')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CHECKPOINT, or from the latest checkpoint in the '
        'work dir when no path is given')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the total batch size')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. '
                        'train_cfg.max_epochs=1')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()
    if not osp.isfile(args.config):
        raise SystemExit(f'error: config file not found: {args.config}')
    setup_cache_size_limit_of_dynamo()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = AMP_WRAPPERS.get(
            cfg.optim_wrapper.get('type'), 'CPUCapableAmpOptimWrapper')
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise SystemExit(f'error: checkpoint to resume not found: '
                             f'{args.resume}')
        cfg.resume = True
        cfg.load_from = args.resume
    if args.launcher != 'none':
        setup_cpu_distributed(cfg)
    # Honours the config's runner_type (RTDETRRunner in
    # configs/_base_/default_runtime.py), as mmdet's tools/train.py does.
    runner = RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
