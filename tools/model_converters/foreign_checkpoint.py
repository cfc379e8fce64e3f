"""The command line shared by the checkpoint converters of this folder
(``rtdetr_official_to_mmdet.py``, ``ultralytics_to_mmdet.py``): arguments
``SRC DST``, the conversion by ``rtdetr_zoo.engine.convert_checkpoint_file``
(which logs what it converted and dropped), and an error message with exit
status 1 for a missing, unreadable or foreign file.

The converters import it by name: Python starts a script with the script's
own folder on ``sys.path``.
"""
import argparse
from typing import Optional, Sequence

from rtdetr_zoo.engine import convert_checkpoint_file


def main(layout: str, description: str, src_help: str,
         argv: Optional[Sequence[str]] = None) -> None:
    """Convert the ``SRC`` checkpoint of ``argv`` (default: the command
    line), in the foreign ``layout`` (``'official'`` or ``'ultralytics'``),
    into ``DST``.

    Raises:
        SystemExit: ``SRC`` is missing, unreadable or not in ``layout``.
    """
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('src', help=src_help)
    parser.add_argument('dst', help='output checkpoint for rtdetr_zoo')
    args = parser.parse_args(argv)
    try:
        convert_checkpoint_file(args.src, args.dst, layout=layout)
    except (OSError, RuntimeError, TypeError, ValueError) as err:
        raise SystemExit(f'error: {err}') from None
