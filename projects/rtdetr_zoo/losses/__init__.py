"""Losses."""
from .varifocal_loss import RTDETRVarifocalLoss  # noqa: F401
