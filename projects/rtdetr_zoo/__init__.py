"""rtdetr_zoo: RT-DETR and a zoo of RT-DETR variants for MMDetection 3.x.

Importing the package registers every component into mmdet's (and, for the
runner, mmengine's) registries and changes nothing else in the process (no
environment variable, no patched library table). Checkpoints are read with
``torch.load``'s weights-only unpickler by
:func:`rtdetr_zoo.engine.read_checkpoint` and by the configs' runner
(``runner_type = 'RTDETRRunner'``), which allow exactly the numpy and
mmengine types that mmengine checkpoints carry.
"""
from . import (backbones, datasets, dense_heads,  # noqa: F401
               detectors, engine, layers, losses, necks)

__version__ = '0.1.0'
