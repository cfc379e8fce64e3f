"""Convert an official RT-DETR (rtdetr_pytorch) or RT-DETRv2
(rtdetrv2_pytorch) checkpoint to rtdetr_zoo.

    python tools/model_converters/rtdetr_official_to_mmdet.py SRC DST

SRC is a ``torch.save`` file holding the official model's state dict
(directly, or under ``'ema' -> 'module'``, ``'model'`` or ``'state_dict'``).
Every source tensor is accounted for: it is renamed to a key of our model,
or listed as dropped with the reason. Written: ``{'state_dict': ...,
'meta': {...}}`` loadable by ``load_from`` / ``tools/test.py``. The
conversion is ``rtdetr_zoo.engine.convert_checkpoint_file``. (Converting is
optional: the configs also load SRC as it is.)
"""
from foreign_checkpoint import main

if __name__ == '__main__':
    main('official', __doc__, src_help='official checkpoint')
