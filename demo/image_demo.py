"""Draw a detector's predictions on an image or on every image of a folder.

    python demo/image_demo.py IMG_OR_FOLDER CONFIG CHECKPOINT \
        --out-dir DIR [--score-thr 0.3] [--device cpu] \
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
"""
import argparse
import os
import os.path as osp
import sys

import mmcv
from mmengine.config import DictAction
from mmengine.utils import track_iter_progress

from mmdet.apis import inference_detector, init_detector
from mmdet.visualization import DetLocalVisualizer

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', required=True,
                        help='folder for the drawn images (created)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw detections with a score above this')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args(argv)
    for path, what in ((args.config, 'config'),
                       (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            parser.error(f'{what} file not found: {path}')
    if not osp.exists(args.inputs):
        parser.error(f'input image or folder not found: {args.inputs}')
    if not 0 <= args.score_thr <= 1:
        parser.error(f'--score-thr must be in [0, 1], got {args.score_thr}')
    return args


def list_images(inputs):
    """``inputs`` itself if it is a file, else the images in the folder
    (sorted; not recursive)."""
    if osp.isfile(inputs):
        return [inputs]
    images = sorted(
        osp.join(inputs, name) for name in os.listdir(inputs)
        if name.lower().endswith(IMAGE_EXTENSIONS))
    if not images:
        raise FileNotFoundError(
            f'no images ({", ".join(IMAGE_EXTENSIONS)}) in folder {inputs}')
    return images


def run_demo(inputs, config, checkpoint, out_dir, score_thr=0.3,
             device='cpu', cfg_options=None):
    """Predict and draw every image of ``inputs``.

    Returns:
        list[tuple[str, DetDataSample]]: output path and prediction of each
        image (boxes in original-image pixels).
    """
    images = list_images(inputs)
    model = init_detector(config, checkpoint, device=device,
                          cfg_options=cfg_options)
    visualizer = DetLocalVisualizer.get_instance('rtdetr_zoo_image_demo')
    visualizer.dataset_meta = model.dataset_meta
    os.makedirs(out_dir, exist_ok=True)
    outputs = []
    for path in track_iter_progress(images):
        image = mmcv.imread(path)
        if image is None:
            raise ValueError(f'cannot read image {path}')
        result = inference_detector(model, image)
        out_file = osp.join(out_dir, osp.basename(path))
        visualizer.add_datasample(
            osp.basename(path), mmcv.bgr2rgb(image), data_sample=result,
            draw_gt=False, show=False, pred_score_thr=score_thr,
            out_file=out_file)
        outputs.append((out_file, result))
    return outputs


def main(argv=None):
    args = parse_args(argv)
    outputs = run_demo(args.inputs, args.config, args.checkpoint,
                       args.out_dir, args.score_thr, args.device,
                       args.cfg_options)
    drawn = sum(
        int((result.pred_instances.scores > args.score_thr).sum())
        for _, result in outputs)
    print(f'\nwrote {len(outputs)} image(s) with {drawn} detection(s) above '
          f'{args.score_thr} to {args.out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
