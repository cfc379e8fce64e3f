"""Convert an Ultralytics RT-DETR checkpoint (``rtdetr-l.pt``,
``rtdetr-x.pt`` or a ``best.pt`` trained by Ultralytics) to rtdetr_zoo.

    python tools/model_converters/ultralytics_to_mmdet.py SRC DST

SRC is the file as Ultralytics saves it (a pickled ``RTDETRDetectionModel``
in fp16 under ``'model'`` or ``'ema'``); its tensors are read without
ultralytics and without unpickling code. Every tensor is renamed to a key of
our ``rtdetr_hgnetv2_l_coco`` / ``rtdetr_hgnetv2_x_coco`` model (or listed
as dropped with the reason). Written: ``{'state_dict': ..., 'meta': {...}}``
loadable by ``load_from`` / ``tools/test.py``. The conversion is
``rtdetr_zoo.engine.convert_ultralytics_checkpoint``. (Converting is
optional: both configs also load SRC as it is.)
"""
import argparse

from mmengine.logging import print_log

from rtdetr_zoo.engine import convert_ultralytics_checkpoint


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('src', help='Ultralytics checkpoint (.pt)')
    parser.add_argument('dst', help='output checkpoint for rtdetr_zoo')
    args = parser.parse_args()
    try:
        report = convert_ultralytics_checkpoint(args.src, args.dst)
    except (OSError, RuntimeError, TypeError, KeyError) as err:
        # A KeyError's str() is the repr of its message.
        message = err.args[0] if isinstance(err, KeyError) else err
        raise SystemExit(f'error: {message}') from None
    print_log(f'converted {report["num_ultralytics"]} Ultralytics tensors '
              f'into {report["num_converted"]} tensors -> {args.dst}',
              logger='current')
    for key, reason in report['dropped'].items():
        print_log(f'dropped {key}: {reason}', logger='current')


if __name__ == '__main__':
    main()
