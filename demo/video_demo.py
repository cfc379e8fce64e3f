"""Draw a detector's predictions on a video, a camera or an image folder.

    python demo/video_demo.py INPUT CONFIG [CHECKPOINT | --onnx MODEL.onnx] \
        [--out OUT.mp4 | OUT.avi | OUT_FOLDER] [--show] [--score-thr 0.3] \
        [--device cpu] [--bf16] [--max-frames N] [--out-fps FPS] \
        [--fourcc MJPG] [--threads N] [--cfg-options k=v ...]

INPUT is a video file, a camera index (0, 1, ... as in OpenCV) or a folder
of images (sorted by name). Examples (a checkpoint from tools/train.py):

    python demo/video_demo.py raccoons.mp4 configs/rtdetr_r18vd_raccoon.py \
        work_dirs/rtdetr_r18vd_raccoon/epoch_20.pth --out outputs/raccoons.mp4
    python demo/video_demo.py 0 configs/rtdetr_r18vd_raccoon.py \
        work_dirs/rtdetr_r18vd_raccoon/epoch_20.pth --show --max-frames 300
    python demo/video_demo.py data/raccoon/images \
        configs/rtdetr_r18vd_raccoon.py --onnx work_dirs/model_int8.onnx \
        --out outputs/drawn/

Boxes, class names and scores above --score-thr are drawn by mmdet's
DetLocalVisualizer (class names and palette from the checkpoint's
dataset_meta, or from the config's test dataset with --onnx), and the
measured, smoothed frame rate in the top-left corner. --out writes a video
(.mp4: mp4v, .avi: XVID, or --fourcc) or, for a folder, one image per frame;
--show opens a window (Esc or q stops). A progress bar with an ETA is shown
when the number of frames is known; the last line gives the frames, the
mean frame rate and where they went. --onnx runs a graph of
tools/deploy/export_onnx.py (fp32 or --int8) with ONNX Runtime instead of a
checkpoint. The work is rtdetr_zoo.video.annotate_video.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import DictAction

from rtdetr_zoo.video import annotate_video, output_kind


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('input', help='video file, camera index or image '
                        'folder')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint file or URL (not with --onnx)')
    parser.add_argument('--onnx', default=None,
                        help='exported .onnx graph to run with ONNX Runtime '
                        'instead of a checkpoint')
    parser.add_argument('--out', default=None,
                        help='output .mp4 / .avi video, or a folder for '
                        'images (created)')
    parser.add_argument('--show', action='store_true',
                        help='show the frames in a window (Esc or q stops)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw detections with a score above this')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--bf16', action='store_true',
                        help='predict under bfloat16 autocast (faster on '
                        'CPUs with AVX-512 BF16 or AMX)')
    parser.add_argument('--max-frames', type=int, default=None,
                        help='stop after N frames (e.g. for a camera)')
    parser.add_argument('--out-fps', type=float, default=None,
                        help='frame rate of the output video (default: the '
                        'input\'s, else 25)')
    parser.add_argument('--fourcc', default=None,
                        help='codec of the output video instead of the '
                        'extension\'s (mp4v for .mp4, XVID for .avi)')
    parser.add_argument('--threads', type=int, default=None,
                        help='ONNX Runtime intra-op threads')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args(argv)
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    if (args.checkpoint is None) == (args.onnx is None):
        parser.error('give a CHECKPOINT or --onnx MODEL.onnx (one of them)')
    if args.checkpoint is not None and not (
            osp.isfile(args.checkpoint) or '://' in args.checkpoint):
        parser.error(f'checkpoint file not found: {args.checkpoint}')
    if args.onnx is not None:
        if not osp.isfile(args.onnx):
            parser.error(f'ONNX file not found: {args.onnx}')
        if args.bf16 or args.device != 'cpu':
            parser.error('--bf16 and --device apply to a checkpoint; an '
                         'ONNX graph runs as exported on the CPU')
    if not args.input.isdigit() and not osp.exists(args.input):
        parser.error(f'video file, camera index or image folder not found: '
                     f'{args.input}')
    if args.out is None and not args.show:
        parser.error('give --out (a video or a folder) and/or --show')
    if args.out is not None:
        try:
            output_kind(args.out)
        except ValueError as err:
            parser.error(str(err))
    if not 0 <= args.score_thr <= 1:
        parser.error(f'--score-thr must be in [0, 1], got {args.score_thr}')
    for name in ('max_frames', 'out_fps', 'threads'):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f'--{name.replace("_", "-")} must be > 0, got '
                         f'{value}')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        annotate_video(
            args.input, args.config, args.checkpoint, args.out,
            score_thr=args.score_thr, device=args.device,
            cfg_options=args.cfg_options, bf16=args.bf16, onnx=args.onnx,
            show=args.show, max_frames=args.max_frames, out_fps=args.out_fps,
            fourcc=args.fourcc, num_threads=args.threads)
    except (OSError, ValueError) as err:
        raise SystemExit(f'error: {err}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
