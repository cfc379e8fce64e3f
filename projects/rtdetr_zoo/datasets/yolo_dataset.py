"""A COCO dataset built from an Ultralytics YOLO dataset on first use."""
import os.path as osp
from typing import Optional

from mmengine.dist import barrier, get_dist_info

from mmdet.registry import DATASETS

from .checked_coco import CheckedCocoDataset
from .yolo_to_coco import convert_yolo_split_cached, read_data_yaml


def data_yaml_path(data_root: Optional[str],
                   data_yaml: str = 'data.yaml') -> str:
    """``data_yaml`` resolved against ``data_root`` (kept when absolute)."""
    return osp.join(data_root or '', data_yaml)


@DATASETS.register_module()
class YOLODataset(CheckedCocoDataset):
    """:class:`CheckedCocoDataset` over one split of an Ultralytics YOLO
    dataset (``data.yaml``, ``images/``, ``labels/``; layout and label
    checks in :mod:`rtdetr_zoo.datasets.yolo_to_coco`).

    The split is converted to the COCO json ``ann_file`` on first use and
    again whenever an image or label file changes (rank 0 writes, the others
    wait), so that mmdet's ``CocoMetric`` evaluates it with the same
    ``ann_file``. Class names are ``names`` of data.yaml: ``metainfo``
    needs no ``classes`` (when given, they must equal data.yaml's).

    Example::

        dataset = dict(type='YOLODataset', data_root='data/my_yolo/',
                       data_yaml='data.yaml', split='val',
                       ann_file='coco_from_yolo/val.json', pipeline=[...])
        val_evaluator = dict(type='CocoMetric', metric='bbox',
                             ann_file='data/my_yolo/coco_from_yolo/val.json')

    Args:
        data_yaml (str): Ultralytics' ``data.yaml``, relative to
            ``data_root`` when not absolute.
        split (str): ``'train'``, ``'val'`` or ``'test'``.
        ann_file (str, optional): Where the split's COCO json is written
            (relative to ``data_root`` when not absolute). Defaults to
            ``coco_from_yolo/<split>.json``.
    """

    def __init__(self, data_yaml: str = 'data.yaml',
                 split: str = 'train', ann_file: Optional[str] = None,
                 data_root: str = '', metainfo: Optional[dict] = None,
                 lazy_init: bool = False, **kwargs) -> None:
        self.data_yaml = data_yaml_path(data_root, data_yaml)
        self.split = split
        self.yolo_data = None
        self.yolo_report = {}
        metainfo = dict(metainfo or {})
        # A lazy dataset (mmdet's init_detector builds one for the palette)
        # reads a data.yaml that is not there yet when it loads its data.
        if not lazy_init or osp.isfile(self.data_yaml):
            metainfo = self._metainfo_with_names(metainfo)
        super().__init__(
            ann_file=ann_file or f'coco_from_yolo/{split}.json',
            data_root=data_root, metainfo=metainfo, lazy_init=lazy_init,
            **kwargs)

    def _metainfo_with_names(self, metainfo):
        """``metainfo`` with data.yaml's names as ``classes``."""
        self.yolo_data = read_data_yaml(self.data_yaml)
        names = tuple(self.yolo_data['names'])
        given = metainfo.get('classes')
        if given is not None and tuple(given) != names:
            raise ValueError(
                f'{self.data_yaml}: metainfo classes {tuple(given)} differ '
                f'from its "names" {names}; drop metainfo.classes (they are '
                'read from data.yaml) or make them equal')
        metainfo = dict(metainfo, classes=names)
        if 'palette' not in metainfo and len(names) > len(
                CheckedCocoDataset.METAINFO['palette']):
            metainfo['palette'] = 'random'
        return metainfo

    def load_data_list(self) -> list:
        if self.yolo_data is None:
            self._metainfo.update(self._metainfo_with_names(
                dict(self._metainfo, classes=None)))
        rank, _ = get_dist_info()
        if rank == 0:
            self.yolo_report = convert_yolo_split_cached(
                self.data_yaml, self.split, self.ann_file)
        barrier()
        # COCO file names are relative to the dataset root (data.yaml's
        # "path"), absolute for images outside it.
        self.data_prefix = dict(self.data_prefix,
                                img=self.yolo_data['root'] + osp.sep)
        return super().load_data_list()
