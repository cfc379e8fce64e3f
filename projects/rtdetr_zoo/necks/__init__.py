"""Necks: RT-DETR's hybrid encoder and its variants."""
from .hybrid_encoder import HybridEncoder  # noqa: F401
from .bifpn import BiFPNHybridEncoder  # noqa: F401
