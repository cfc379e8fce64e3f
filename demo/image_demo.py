"""Draw a detector's predictions on an image or on every image of a folder.

    python demo/image_demo.py IMG_OR_FOLDER CONFIG CHECKPOINT \
        --out-dir DIR [--score-thr 0.3] [--device cpu] [--bf16] \
        [--cfg-options k=v ...]

Example (the shipped raccoon data, a checkpoint from tools/train.py):

    python demo/image_demo.py data/raccoon/images/raccoon-1.jpg \
        configs/rtdetr_r18vd_raccoon.py \
        work_dirs/rtdetr_r18vd_raccoon/epoch_20.pth --out-dir outputs/

Each image goes through the config's test pipeline and ``model.predict``
(mmdet's ``inference_detector``); boxes, class names and scores above
``--score-thr`` are drawn by mmdet's ``DetLocalVisualizer`` on the original
image, saved under DIR with the input's file name. Class names and palette
come from the checkpoint's ``dataset_meta`` (else the config's dataset).
The work is ``rtdetr_zoo.apis.draw_predictions``.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import DictAction


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file or URL')
    parser.add_argument('--out-dir', required=True,
                        help='folder for the drawn images (created)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw detections with a score above this')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--bf16', action='store_true',
                        help='predict under bfloat16 autocast (faster on '
                        'CPUs with AVX-512 BF16 or AMX)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args(argv)
    for path, what in ((args.config, 'config'),
                       (args.checkpoint, 'checkpoint')):
        # A checkpoint may also be a URL (e.g. an official release).
        if not osp.isfile(path) and not (what == 'checkpoint'
                                         and '://' in path):
            parser.error(f'{what} file not found: {path}')
    if not osp.exists(args.inputs):
        parser.error(f'input image or folder not found: {args.inputs}')
    if not 0 <= args.score_thr <= 1:
        parser.error(f'--score-thr must be in [0, 1], got {args.score_thr}')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    # Imported after the checks, so that a wrong path fails in a second.
    from rtdetr_zoo.apis import draw_predictions
    outputs = draw_predictions(args.inputs, args.config, args.checkpoint,
                               args.out_dir, args.score_thr, args.device,
                               args.cfg_options, bf16=args.bf16)
    drawn = sum(
        int((result.pred_instances.scores > args.score_thr).sum())
        for _, result in outputs)
    print(f'\nwrote {len(outputs)} image(s) with {drawn} detection(s) above '
          f'{args.score_thr} to {args.out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
