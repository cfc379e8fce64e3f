"""Export an RT-DETR config to an end-to-end, NMS-free ONNX graph.

    python tools/deploy/export_onnx.py CONFIG [CHECKPOINT] --out model.onnx \
        [--opset 17] [--dynamic-batch] [--batch 1] [--simplify] \
        [--shape H W] [--max-per-img K] [--check IMG] [--cfg-options k=v ...] \
        [--int8 [--calib-images 32] [--calib-dir DIR] [--int8-out PATH]]

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

``--int8`` also writes a statically quantized graph (default: ``--out``
with ``_int8`` before ``.onnx``): ONNX Runtime ``quantize_static``, QDQ,
per-channel int8 weights, uint8 activations, MinMax calibration on
``--calib-images`` images (default 32) spread over the config's training
set (``--calib-dir DIR``: the images of a folder instead), each resized to
H x W like the test pipeline. Quantized by default: Conv / MatMul / Gemm
of the backbone and the encoder (neck); query selection, decoder and heads
stay fp32 (measurements in docs/deploy.md; ``--int8-op-types`` and
``--int8-scopes`` change the choice, ``--int8-scopes`` with no value
quantizes the whole graph). The work is
``rtdetr_zoo.deploy.quantize_onnx``.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import DictAction

from rtdetr_zoo.apis import list_images, load_detector
from rtdetr_zoo.deploy import (DEFAULT_CALIB_IMAGES, DEFAULT_OP_TYPES,
                               DEFAULT_OPSET, DEFAULT_SCOPES, check_onnx,
                               default_input_shape, export_onnx,
                               quantize_onnx, train_image_paths)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
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
    parser.add_argument('--int8', action='store_true',
                        help='also write a statically quantized INT8 graph')
    parser.add_argument('--int8-out', default=None,
                        help='INT8 graph path (default: OUT with _int8)')
    parser.add_argument('--calib-images', type=int,
                        default=DEFAULT_CALIB_IMAGES,
                        help='calibration images for --int8 (default '
                        f'{DEFAULT_CALIB_IMAGES})')
    parser.add_argument('--calib-dir', default=None,
                        help='calibrate on the images of this folder '
                        '(default: the config\'s training set)')
    parser.add_argument('--int8-op-types', nargs='+',
                        default=list(DEFAULT_OP_TYPES),
                        help='op types to quantize (default: '
                        f'{" ".join(DEFAULT_OP_TYPES)})')
    parser.add_argument('--int8-scopes', nargs='*',
                        default=list(DEFAULT_SCOPES),
                        help='quantize only nodes whose name starts with one '
                        f'of these (default: {" ".join(DEFAULT_SCOPES)}); '
                        'none given: the whole graph')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args(argv)
    if args.calib_images < 1:
        parser.error(f'--calib-images must be >= 1, got {args.calib_images}')
    if args.calib_dir is not None and not osp.isdir(args.calib_dir):
        parser.error(f'--calib-dir folder not found: {args.calib_dir}')
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


def main(argv: Optional[List[str]] = None) -> int:
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
    if args.int8:
        int8_out = args.int8_out or osp.splitext(args.out)[0] + '_int8.onnx'
        try:
            if args.calib_dir is not None:
                calib = list_images(args.calib_dir)[:args.calib_images]
            else:
                calib = train_image_paths(args.config, args.calib_images,
                                          args.cfg_options)
            info = quantize_onnx(args.out, int8_out, calib,
                                 op_types=tuple(args.int8_op_types),
                                 scopes=tuple(args.int8_scopes))
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(f'error: --int8: {err}')
        print(f'\nINT8 graph {int8_out}: {info["num_quantized_nodes"]} nodes '
              f'quantized, calibrated on {info["num_calib_images"]} images')
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
