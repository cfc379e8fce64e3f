"""Convert an Ultralytics RT-DETR checkpoint (``rtdetr-l.pt``,
``rtdetr-x.pt`` or a ``best.pt`` trained by Ultralytics) to rtdetr_zoo.

    python tools/model_converters/ultralytics_to_mmdet.py SRC DST

SRC is the file as Ultralytics saves it (a pickled ``RTDETRDetectionModel``
in fp16 under ``'model'`` or ``'ema'``); its tensors are read without
ultralytics and without unpickling code. Every tensor is renamed to a key of
our ``rtdetr_hgnetv2_l_coco`` / ``rtdetr_hgnetv2_x_coco`` model (or listed
as dropped with the reason). Written: ``{'state_dict': ..., 'meta': {...}}``
loadable by ``load_from`` / ``tools/test.py``, with the file's Ultralytics
version and class names. The conversion is
``rtdetr_zoo.engine.convert_checkpoint_file``. (Converting is optional: both
configs also load SRC as it is.)
"""
from foreign_checkpoint import main

if __name__ == '__main__':
    main('ultralytics', __doc__, src_help='Ultralytics checkpoint (.pt)')
