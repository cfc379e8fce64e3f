"""Datasets and converters."""
from .voc_coco_dataset import VOCAsCocoDataset  # noqa: F401
from .voc_to_coco import convert_voc_to_coco, parse_voc_xml  # noqa: F401
from .checked_coco import CheckedCocoDataset, check_categories  # noqa: F401
from .safe_loading import BadImageError, SafeLoadImageFromFile  # noqa: F401
