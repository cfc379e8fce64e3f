"""Convert an official RT-DETR (rtdetr_pytorch) or RT-DETRv2
(rtdetrv2_pytorch) checkpoint to rtdetr_zoo.

    python tools/model_converters/rtdetr_official_to_mmdet.py SRC DST

SRC is a ``torch.save`` file holding the official model's state dict
(directly, or under ``'ema' -> 'module'``, ``'model'`` or ``'state_dict'``).
Every source tensor is accounted for: it is renamed to a key of our model,
or listed as dropped with the reason. Written: ``{'state_dict': ...,
'meta': {...}}`` loadable by ``load_from`` / ``tools/test.py``. The
conversion is ``rtdetr_zoo.deploy.convert_official_checkpoint``.
"""
import argparse

from mmengine.logging import print_log

from rtdetr_zoo.engine import convert_official_checkpoint


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('src', help='official checkpoint')
    parser.add_argument('dst', help='output checkpoint for rtdetr_zoo')
    args = parser.parse_args()
    try:
        report = convert_official_checkpoint(args.src, args.dst)
    except (OSError, RuntimeError, TypeError, KeyError) as err:
        # A KeyError's str() is the repr of its message.
        message = err.args[0] if isinstance(err, KeyError) else err
        raise SystemExit(f'error: {message}') from None
    print_log(f'converted {report["num_official"]} official tensors into '
              f'{report["num_converted"]} tensors -> {args.dst}',
              logger='current')
    for key, reason in report['dropped'].items():
        print_log(f'dropped {key}: {reason}', logger='current')


if __name__ == '__main__':
    main()
