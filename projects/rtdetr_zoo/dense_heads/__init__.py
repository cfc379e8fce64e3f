"""Dense heads."""
from .rtdetr_head import RTDETRHead  # noqa: F401
