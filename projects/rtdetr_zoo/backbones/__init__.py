"""Backbones: RT-DETR baselines and the zoo."""
from .hgnetv2 import HGNetv2  # noqa: F401
from .resnet_vd import ResNetVd  # noqa: F401
