"""Export an RT-DETR config to an end-to-end, NMS-free ONNX graph.

    python tools/deploy/export_onnx.py CONFIG [CHECKPOINT] --out model.onnx \
        [--opset 17] [--dynamic-batch] [--batch 1] [--simplify] \
        [--shape H W] [--max-per-img K] [--check IMG] [--cfg-options k=v ...]

Graph: ``images`` float32 (B, 3, H, W), RGB, values in [0, 255] (the
normalisation and padding of the config's data pre-processor are inside the
graph) -> ``labels`` int64 (B, K), ``boxes`` float32 (B, K, 4) as xyxy in
input pixels, ``scores`` float32 (B, K): top-k after sigmoid, no NMS. Resize
images to (H, W) like the test pipeline (``Resize(keep_ratio=False)``) and
divide boxes by the resize factors to get original-image pixels.

Every module with a deploy path is switched to it first (RepVGG blocks
fused, RIFormer blocks re-parameterised). H and W are fixed at export time
(default: the neck's ``eval_spatial_size``, else 640x640); ``--dynamic-batch``
makes the batch dimension dynamic. Without CHECKPOINT the weights are
random (useful to check exportability and speed).

``--check IMG`` runs the exported graph in ONNX Runtime on IMG (resized to
H x W) and compares with mmdet's ``model.predict`` in PyTorch (the
non-deployed model): after one-to-one matching, boxes (in units of the image
size) and scores must agree within ``--atol`` (1e-3); the exit status is 1
otherwise.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

from rtdetr_zoo.apis import load_detector
from rtdetr_zoo.deploy import (DEFAULT_OPSET, check_onnx, default_input_shape,
                               export_onnx)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint (random weights if omitted)')
    parser.add_argument('--out', required=True, help='output .onnx file')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                        help=f'ONNX opset (>= 16; default {DEFAULT_OPSET})')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        help='input size: H W, or one value for a square '
                        '(default: the neck eval_spatial_size, else 640)')
    parser.add_argument('--batch', type=int, default=1,
                        help='batch size traced (fixed unless '
                        '--dynamic-batch)')
    parser.add_argument('--dynamic-batch', action='store_true',
                        help='dynamic batch dimension')
    parser.add_argument('--simplify', action='store_true',
                        help='simplify the graph with onnxsim')
    parser.add_argument('--max-per-img', type=int, default=None,
                        help='detections per image (default: the config '
                        'test_cfg.max_per_img)')
    parser.add_argument('--check', metavar='IMG', default=None,
                        help='compare ONNX Runtime with PyTorch on IMG')
    parser.add_argument('--atol', type=float, default=1e-3,
                        help='tolerance of --check')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error(f'--shape takes 1 or 2 values, got {args.shape}')
    if args.shape is not None and min(args.shape) < 32:
        parser.error(f'--shape must be at least 32 pixels, got {args.shape}')
    if args.batch < 1:
        parser.error(f'--batch must be >= 1, got {args.batch}')
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        parser.error(f'checkpoint file not found: {args.checkpoint}')
    if args.check is not None and not osp.isfile(args.check):
        parser.error(f'--check image not found: {args.check}')
    return args


def main(argv=None):
    args = parse_args(argv)
    model = load_detector(args.config, args.checkpoint, args.cfg_options)
    if args.shape is None:
        input_shape = default_input_shape(model)
    elif len(args.shape) == 1:
        input_shape = (args.shape[0], args.shape[0])
    else:
        input_shape = tuple(args.shape)
    info = export_onnx(
        model, args.out, input_shape, batch_size=args.batch,
        opset=args.opset, dynamic_batch=args.dynamic_batch,
        simplify=args.simplify, max_per_img=args.max_per_img)
    batch = 'dynamic' if args.dynamic_batch else args.batch
    print(f'exported {args.config} to {info["path"]}: images '
          f'({batch}, 3, {input_shape[0]}, {input_shape[1]}) RGB 0-255 -> '
          f'top-{info["topk"]} labels/boxes/scores, opset {args.opset}; '
          f'{len(info["deployed"])} modules switched to deploy')
    if args.check is None:
        return 0
    stats = check_onnx(model, args.out, args.check, input_shape, args.atol)
    print(f'check on {args.check}: {stats["num_checked"]} detections, max '
          f'box diff {stats["max_box_diff"]:.2e} (x image size), max score '
          f'diff {stats["max_score_diff"]:.2e}, unmatched '
          f'{stats["num_unmatched"]} -> '
          f'{"OK" if stats["ok"] else "MISMATCH"} (atol {args.atol})')
    return 0 if stats['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
