"""Convert an Ultralytics YOLO dataset (data.yaml) into COCO json files.

    python tools/dataset_converters/yolo2coco.py data/my_yolo/data.yaml \
        --out-dir data/my_yolo/coco [--splits train val]

Writes OUT_DIR/<split>.json for every split data.yaml names (or --splits):
image file names relative to the dataset root (data.yaml's "path"),
category ids = YOLO class + 1, boxes in pixels. Bad labels are reported as
by the YOLODataset (docs/custom_data.md).
"""
import argparse

from mmengine.logging import print_log

from rtdetr_zoo.datasets import convert_yolo_to_coco


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('data_yaml', help="Ultralytics' data.yaml")
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--splits', nargs='+',
                        choices=['train', 'val', 'test'],
                        help='default: every split in data.yaml')
    args = parser.parse_args()
    try:
        paths = convert_yolo_to_coco(args.data_yaml, args.out_dir,
                                     args.splits)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f'error: {err}') from None
    for split, path in paths.items():
        print_log(f'{split}: {path}', logger='current')


if __name__ == '__main__':
    main()
