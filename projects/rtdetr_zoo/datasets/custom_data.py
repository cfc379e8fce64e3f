"""A user's own data set in one config: ``data_root`` and ``data_format``.

mmengine substitutes a config's variables when it parses the file, so
``--cfg-options data_root=...`` changes the top-level ``data_root`` only, not
the datasets' copies; and the class names of a user's data are known only
once the data is read. :func:`resolve_custom_data` therefore applies, at run
time, the top-level ``data_root`` and the layout
``custom_formats[data_format]`` (``yolo``, ``coco`` or ``voc``, see
``configs/_base_/datasets/custom_detection.py``) to the train / val / test
datasets and evaluators, reads the class names
from the data (data.yaml's ``names``, the COCO json's categories, the VOC
XML names) and sets them as every dataset's ``metainfo.classes`` and as
``model.bbox_head.num_classes``: the one place both are decided.
:class:`CustomDataRunner` (``runner_type = 'CustomDataRunner'``) calls it,
so ``tools/train.py``, ``tools/test.py``, ``mim train`` and ``mim test`` all
see the resolved config, and the work dir keeps it (use that file for
inference).
"""
import copy
import json
import os
import os.path as osp
from typing import List

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import RUNNERS

from ..engine.runner import RTDETRRunner
from .voc_to_coco import parse_voc_xml
from .yolo_dataset import data_yaml_path
from .yolo_to_coco import read_data_yaml

# Loaders and evaluators, and the layout entry of each (``test`` falls back
# to ``val`` when the layout has none).
LOADER_SPLITS = (('train_dataloader', 'train'), ('val_dataloader', 'val'),
                 ('test_dataloader', 'test'))
EVALUATOR_SPLITS = (('val_evaluator', 'val'), ('test_evaluator', 'test'))


def _coco_names(ann_file):
    with open(ann_file) as f:
        categories = json.load(f).get('categories', [])
    if not categories:
        raise ValueError(f'{ann_file}: no "categories"; list the classes as '
                         '[{"id": 1, "name": ...}, ...]')
    return [c['name'] for c in sorted(categories, key=lambda c: c['id'])]


def _voc_names(dataset):
    voc_root = osp.join(dataset['data_root'], dataset.get('voc_root', ''))
    xml_dir = osp.join(voc_root, 'annotations')
    if not osp.isdir(xml_dir):
        raise FileNotFoundError(
            f'data_format="voc": no annotation folder {xml_dir} (expected '
            f'{voc_root}/annotations/*.xml and {voc_root}/images/)')
    image_dir = osp.join(voc_root, 'images')
    return sorted({name for f in os.listdir(xml_dir) if f.endswith('.xml')
                   for name, _ in parse_voc_xml(osp.join(xml_dir, f),
                                                image_dir)['objects']})


def dataset_class_names(dataset: dict) -> List[str]:
    """The class names of a (resolved) train dataset config, read from its
    data: data.yaml's ``names`` (``YOLODataset``), the json categories in
    id order (an existing ``ann_file``), or the sorted object names of the
    VOC XML files (``VOCAsCocoDataset`` before its first conversion).

    Raises:
        FileNotFoundError: the data is not where the layout says, naming
            the expected files.
    """
    dataset_type = dataset['type']
    if dataset_type == 'YOLODataset':
        return read_data_yaml(data_yaml_path(
            dataset['data_root'], dataset.get('data_yaml', 'data.yaml')))[
                'names']
    ann_file = osp.join(dataset['data_root'], dataset['ann_file'])
    if osp.isfile(ann_file):
        return _coco_names(ann_file)
    if dataset_type == 'VOCAsCocoDataset':
        return _voc_names(dataset)
    raise FileNotFoundError(
        f'{dataset_type}: annotation file not found: {ann_file} (the '
        f'data_format layout expects it under data_root '
        f'{dataset["data_root"]}; see custom_formats in the config)')


def resolve_custom_data(cfg: Config) -> Config:
    """The config with its top-level ``data_root`` / ``data_format`` applied
    (see the module docstring); a config without ``data_format`` is
    returned unchanged.

    Raises:
        ValueError: ``data_format`` is not a key of ``custom_formats``.
    """
    if 'data_format' not in cfg:
        return cfg
    cfg = copy.deepcopy(cfg)
    formats = cfg.get('custom_formats', {})
    if cfg.data_format not in formats:
        raise ValueError(f'data_format={cfg.data_format!r} is not one of '
                         f'{sorted(formats)} (custom_formats in the config)')
    layout = dict(formats[cfg.data_format])
    layout.setdefault('test', layout['val'])
    data_root = cfg.data_root
    for loader, split in LOADER_SPLITS:
        if cfg.get(loader) is None:
            continue
        dataset = cfg[loader].dataset
        for key in ('type', 'data_yaml', 'split', 'voc_root', 'ann_file',
                    'data_prefix'):
            dataset.pop(key, None)
        dataset.update(copy.deepcopy(layout[split]), data_root=data_root)
    for evaluator, split in EVALUATOR_SPLITS:
        if cfg.get(evaluator) is not None:
            cfg[evaluator].ann_file = osp.join(data_root,
                                               layout[split]['ann_file'])
    classes = tuple(dataset_class_names(cfg.train_dataloader.dataset))
    for loader, _ in LOADER_SPLITS:
        if cfg.get(loader) is not None:
            dataset = cfg[loader].dataset
            dataset.metainfo = dict(dataset.get('metainfo') or {},
                                    classes=classes)
    cfg.model.bbox_head.num_classes = len(classes)
    print_log(f'custom data: data_format={cfg.data_format!r}, data_root='
              f'{data_root!r}, {len(classes)} classes {classes[:8]}'
              f"{' ...' if len(classes) > 8 else ''} "
              f'(model.bbox_head.num_classes={len(classes)})',
              logger='current')
    return cfg


@RUNNERS.register_module()
class CustomDataRunner(RTDETRRunner):
    """:class:`RTDETRRunner` that builds from
    :func:`resolve_custom_data`'s config (selected by
    ``runner_type = 'CustomDataRunner'`` in
    ``configs/_base_/datasets/custom_detection.py``)."""

    @classmethod
    def from_cfg(cls, cfg: Config) -> 'CustomDataRunner':
        return super().from_cfg(resolve_custom_data(cfg))
