"""Convert a Pascal VOC folder (images + XML) into COCO json files.

    python tools/dataset_converters/voc2coco.py data/raccoon \
        --out-dir data/raccoon/coco [--val-ratio 0.2] [--seed 0]
        [--classes raccoon ...] [--skip-bad-images]

Writes OUT_DIR/train.json and OUT_DIR/val.json with a reproducible split
(raccoon: 160 / 40).
"""
import argparse

from mmengine.logging import print_log

from rtdetr_zoo.datasets import convert_voc_to_coco


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('voc_root',
                        help='folder with annotations/ and images/')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--val-ratio', type=float, default=0.2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--classes', nargs='+', help='class names in id order')
    parser.add_argument('--ann-dir', default='annotations')
    parser.add_argument('--img-dir', default='images')
    parser.add_argument('--skip-bad-images', action='store_true',
                        help='leave out unreadable, truncated or wrongly '
                        'sized images (listed in the log) instead of failing')
    args = parser.parse_args()
    try:
        paths = convert_voc_to_coco(
            args.voc_root, args.out_dir, args.val_ratio, args.seed,
            args.classes, args.ann_dir, args.img_dir,
            skip_bad_images=args.skip_bad_images)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f'error: {err}') from None
    for split, path in paths.items():
        print_log(f'{split}: {path}', logger='current')


if __name__ == '__main__':
    main()
