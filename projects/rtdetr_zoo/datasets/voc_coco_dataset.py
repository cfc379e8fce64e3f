"""A COCO dataset built from a Pascal VOC folder on first use."""
import os.path as osp
from typing import List

from mmengine.dist import get_dist_info, barrier

from mmdet.registry import DATASETS

from .checked_coco import CheckedCocoDataset
from .voc_to_coco import convert_voc_to_coco


@DATASETS.register_module()
class VOCAsCocoDataset(CheckedCocoDataset):
    """:class:`CheckedCocoDataset` over a VOC folder, converted to json on
    first use (categories checked, bad boxes clipped or dropped and logged).

    ``ann_file`` (e.g. ``coco/train.json`` under ``data_root``) is written by
    :func:`convert_voc_to_coco` when missing (rank 0 writes, the others wait),
    so a fresh clone trains with no preparation step.

    Args:
        voc_root (str): VOC folder (``annotations/*.xml``, ``images/``),
            relative to ``data_root`` when not absolute. Defaults to
            ``data_root``.
        val_ratio (float), split_seed (int): Split settings, see
            :func:`convert_voc_to_coco`.
    """

    def __init__(self,
                 *args,
                 voc_root: str = '',
                 val_ratio: float = 0.2,
                 split_seed: int = 0,
                 **kwargs) -> None:
        self.voc_root = voc_root
        self.val_ratio = val_ratio
        self.split_seed = split_seed
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Convert the VOC folder when ``ann_file`` is missing, then load
        it as :class:`CheckedCocoDataset` does."""
        if not osp.isfile(self.ann_file):
            voc_root = osp.join(self.data_root or '', self.voc_root)
            rank, _ = get_dist_info()
            if rank == 0:
                convert_voc_to_coco(
                    voc_root, osp.dirname(self.ann_file), self.val_ratio,
                    self.split_seed, classes=self.metainfo.get('classes'))
            barrier()
        return super().load_data_list()
