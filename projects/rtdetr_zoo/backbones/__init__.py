"""Backbones: RT-DETR baselines and the zoo, all under one contract
(:class:`BackboneContract`, see ``base.py``)."""
from .base import BackboneContract  # noqa: F401
from .hgnetv2 import HGNetv2  # noqa: F401
from .resnet_vd import ResNetVd  # noqa: F401
from .riformer import RIFormer  # noqa: F401
from .rmt import RMT  # noqa: F401
from .bhvit import CCRINet  # noqa: F401
from .mobilenetv4 import MobileNetV4  # noqa: F401
