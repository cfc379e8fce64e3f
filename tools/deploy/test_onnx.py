"""COCO-evaluate an exported ONNX graph in ONNX Runtime, like tools/test.py.

    python tools/deploy/test_onnx.py CONFIG MODEL.onnx [--max-images N] \
        [--threads N] [--cfg-options k=v ...]

The graph of ``tools/deploy/export_onnx.py`` (fp32 or ``--int8``) runs over
the config's test dataset: each image goes through the test pipeline
(resize as for PyTorch), the packed BGR uint8 image is fed as the graph's
float RGB input, boxes are divided by the pipeline's scale factor (original
image pixels) and the predictions go to the config's ``test_evaluator``
(COCO bbox mAP for our configs), with a progress bar. ``--max-images N``
evaluates the first N test images only (the COCO evaluation is restricted to
them). The graph's fixed input size must equal the test pipeline's resize.
The work is ``rtdetr_zoo.deploy.evaluate_onnx``.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import DictAction
from mmengine.logging import MMLogger

from rtdetr_zoo.deploy import evaluate_onnx


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('onnx', help='exported .onnx graph')
    parser.add_argument('--max-images', type=int, default=None,
                        help='evaluate the first N test images only')
    parser.add_argument('--threads', type=int, default=None,
                        help='ONNX Runtime intra-op threads')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args(argv)
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    if not osp.isfile(args.onnx):
        parser.error(f'ONNX file not found: {args.onnx}')
    if args.max_images is not None and args.max_images < 1:
        parser.error(f'--max-images must be >= 1, got {args.max_images}')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logger = MMLogger.get_instance('test_onnx', log_level='INFO')
    try:
        metrics = evaluate_onnx(args.config, args.onnx, args.max_images,
                                args.cfg_options, num_threads=args.threads,
                                logger=logger)
    except ValueError as err:
        raise SystemExit(f'error: {err}')
    for name, value in metrics.items():
        print(f'{name}: {value}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
