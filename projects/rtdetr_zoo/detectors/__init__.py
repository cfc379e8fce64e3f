"""Detectors."""
from .rtdetr import RTDETR  # noqa: F401
from .dfine import DFINE  # noqa: F401
