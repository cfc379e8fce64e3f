"""Datasets and converters."""
from .voc_coco_dataset import VOCAsCocoDataset  # noqa: F401
from .voc_to_coco import convert_voc_to_coco, parse_voc_xml  # noqa: F401
