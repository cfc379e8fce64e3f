"""rtdetr_zoo: RT-DETR and a zoo of RT-DETR variants for MMDetection 3.x.

Importing the package registers every component into mmdet's (and, for the
runner, mmengine's) registries, and adds exactly the types that mmengine
0.10.7 checkpoints pickle besides tensors to torch's weights-only
allow-list (``torch.serialization.add_safe_globals`` with
:data:`rtdetr_zoo.engine.CHECKPOINT_SAFE_GLOBALS`: numpy arrays and scalars
of the float64, int64 and uint32 dtypes, mmengine's ``HistoryBuffer``, and
a ``getattr`` that resolves only ``HistoryBuffer``'s statistics methods).
That is what lets mmdet's ``init_detector`` and ``DetInferencer``, which
call ``torch.load`` with its ``weights_only=True`` default, read checkpoints
written before the configs' runner (``runner_type = 'RTDETRRunner'``)
encoded those objects as tensors (checkpoints written since load anywhere
without it). Any other global is still refused; no environment variable is
set and ``weights_only`` is never turned off.
"""
from .mmpretrain_multimodal import skip_unloadable_mmpretrain_multimodal

# Before mmdet imports mmpretrain: transformers 5 breaks mmpretrain 1.2's
# multimodal models, which rtdetr_zoo does not use (mmpretrain_multimodal.py).
skip_unloadable_mmpretrain_multimodal()

from . import (backbones, datasets, dense_heads,  # noqa: E402,F401
               detectors, engine, layers, losses, necks, structures,
               task_modules)

engine.register_checkpoint_safe_globals()

__version__ = '0.1.0'
