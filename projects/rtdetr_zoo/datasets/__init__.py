"""Datasets and converters."""
from .voc_coco_dataset import VOCAsCocoDataset  # noqa: F401
from .voc_to_coco import convert_voc_to_coco, parse_voc_xml  # noqa: F401
from .checked_coco import CheckedCocoDataset, check_categories  # noqa: F401
from .safe_loading import BadImageError, SafeLoadImageFromFile  # noqa: F401
from .yolo_to_coco import (convert_yolo_split_cached,  # noqa: F401
                           convert_yolo_to_coco, label_path_of,
                           parse_label_file, read_data_yaml,
                           yolo_split_to_coco)
from .yolo_dataset import YOLODataset  # noqa: F401
from .custom_data import (CustomDataRunner,  # noqa: F401
                          dataset_class_names, resolve_custom_data)
from .batch_mixup import BatchRollMixup  # noqa: F401
from .deim_mosaic import DEIMMosaic, SkipAfterMosaic  # noqa: F401
