"""rtdetr_zoo: RT-DETR and a zoo of RT-DETR variants for MMDetection 3.x.

Importing the package registers every component into mmdet's registries.

It also restores ``torch.load``'s pre-2.6 default (``weights_only=False``)
unless ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is already set: mmengine 0.10.7
checkpoints carry numpy and mmengine objects (message hub, meta) that the
weights-only unpickler refuses, which breaks ``--resume`` and ``load_from``.
Only load checkpoints you trust, as with any pickle.
"""
import os

os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
from . import (backbones, datasets, dense_heads, detectors, engine,  # noqa: E402,F401
               layers, losses, necks)

__version__ = '0.1.0'
