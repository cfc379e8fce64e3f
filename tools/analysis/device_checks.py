"""Checks that need a GPU (CI has none): RT-DETRv2's attention on the device
against the CPU, and a detector's bf16 inference and training step there
(mmcv's deformable attention kernel has no bf16; rtdetr_zoo runs it in
float32).

    python tools/analysis/device_checks.py [--device cuda] \
        [--config configs/rtdetr_r18vd_coco.py]

Prints one line per check and exits with 1 if any fails. The logic is
``rtdetr_zoo.analysis.device_checks``.
"""
import argparse
import os.path as osp
import sys

import torch

from rtdetr_zoo.analysis.device_checks import run_device_checks


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--config', default='configs/rtdetr_r18vd_coco.py')
    args = parser.parse_args()
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: no CUDA device on this '
                     f'machine (torch {torch.__version__})')
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    results = run_device_checks(args.device, args.config)
    for name, passed, detail in results:
        print(f'{"PASS" if passed else "FAIL"} {name}: {detail}')
    sys.exit(0 if all(passed for _, passed, _ in results) else 1)


if __name__ == '__main__':
    main()
