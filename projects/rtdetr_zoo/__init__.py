"""rtdetr_zoo: RT-DETR and a zoo of RT-DETR variants for MMDetection 3.x.

Importing the package registers every component into mmdet's registries.
"""
from . import (backbones, datasets, dense_heads, detectors, layers,  # noqa: F401
               losses, necks)

__version__ = '0.1.0'
