"""A COCO dataset that checks its categories and repairs its boxes on load.

Real annotation files are messy: category names that do not match the
config, category ids with gaps, boxes with zero or negative size or lying
partly or wholly outside the image. mmdet's :class:`CocoDataset` silently
drops such boxes (and, with mismatched names, silently every box), so a run
can learn nothing without a single warning. :class:`CheckedCocoDataset`
raises at start-up for what cannot be repaired and logs a count, with
example annotation ids, of what it clipped or dropped.
"""
import logging
import math
import os.path as osp
from collections import Counter, defaultdict
from typing import List, Optional, Sequence

from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

# Reasons a box is changed or dropped, in report order.
CLIPPED = 'clipped to the image'
DROP_MALFORMED = 'dropped: bbox is not 4 finite numbers'
DROP_DEGENERATE = 'dropped: zero-area or negative width/height'
DROP_OUTSIDE = 'dropped: entirely outside the image'
DROP_SMALL = 'dropped: smaller than min_box_size after clipping'
DROP_CATEGORY = 'dropped: category not in metainfo classes'
REASONS = (CLIPPED, DROP_MALFORMED, DROP_DEGENERATE, DROP_OUTSIDE, DROP_SMALL,
           DROP_CATEGORY)
MAX_EXAMPLES = 5


def _examples(ids):
    shown = ', '.join(str(i) for i in ids[:MAX_EXAMPLES])
    return shown + (', ...' if len(ids) > MAX_EXAMPLES else '')


def check_categories(categories: List[dict],
                     classes: Sequence[str],
                     ann_file: str,
                     ann_counts: Optional[Counter] = None) -> List[int]:
    """Match the json's categories to the config's class names.

    Args:
        categories (list[dict]): The json's ``categories`` (``id``, ``name``).
        classes (Sequence[str]): ``metainfo['classes']`` of the dataset.
        ann_file (str): Named in the messages.
        ann_counts (Counter, optional): Annotations per category id, to
            report how many boxes categories outside ``classes`` hold.

    Returns:
        list[int]: The category ids of ``classes``, in label order (label
        ``i`` is ``classes[i]``).

    Raises:
        ValueError: duplicate names in the json, class names missing from the
            json, or classes listed in another order than the json's ids
            (mmdet's dataset and ``CocoMetric`` map labels in id order, so the
            labels would be silently swapped).
    """
    ann_counts = ann_counts or Counter()
    cats = sorted(categories, key=lambda c: c['id'])
    names = [c['name'] for c in cats]
    listing = ', '.join(f"{c['id']}:{c['name']!r}" for c in cats)
    dup = sorted(n for n, k in Counter(names).items() if k > 1)
    if dup:
        raise ValueError(f'{ann_file}: category names {dup} appear more than '
                         f'once in "categories" ({listing}); make them unique')
    classes = list(classes)
    missing = [c for c in classes if c not in names]
    if missing:
        hint = ''
        if tuple(classes) == tuple(CocoDataset.METAINFO['classes']):
            hint = (' (the dataset config sets no metainfo, so the 80 COCO '
                    'class names are used)')
        raise ValueError(
            f'{ann_file}: metainfo classes {missing} are not category names '
            f'of the json{hint}. The json has {listing}. Set '
            f'metainfo=dict(classes={tuple(names)!r}) in the dataset config '
            '(and model.bbox_head.num_classes to its length), or fix the '
            'json.')
    in_json_order = [n for n in names if n in classes]
    if in_json_order != classes:
        raise ValueError(
            f'{ann_file}: metainfo classes {tuple(classes)} are listed in '
            'another order than the json category ids; labels and evaluation '
            'follow the id order, so list them as '
            f'classes={tuple(in_json_order)!r}.')
    unused = [c for c in cats if c['name'] not in classes
              and ann_counts[c['id']]]
    if unused:
        desc = ', '.join(f"{c['name']!r} (id {c['id']}, "
                         f"{ann_counts[c['id']]} boxes)" for c in unused)
        print_log(f'{ann_file}: categories {desc} are not in metainfo classes '
                  'and their boxes are ignored; add the names to '
                  'metainfo.classes to train on them.', logger='current',
                  level=logging.WARNING)
    by_name = {c['name']: c['id'] for c in cats}
    cat_ids = [by_name[n] for n in classes]
    if cat_ids != list(range(1, len(cat_ids) + 1)):
        print_log(f'{ann_file}: category ids {cat_ids} are mapped to the '
                  f'contiguous labels 0..{len(cat_ids) - 1} '
                  f'(model.bbox_head.num_classes must be {len(cat_ids)}).',
                  logger='current')
    return cat_ids


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """:class:`CocoDataset` with start-up checks and logged box repairs.

    At load time:

    * the json categories are matched to ``metainfo['classes']`` by
      :func:`check_categories` (clear error on a mismatch, ids with gaps or
      not starting at 1 are mapped to labels ``0..C-1`` and logged);
    * an image without a positive ``width``/``height`` is an error naming
      the image id and file;
    * boxes partly outside the image are clipped to it; boxes with a
      non-finite, zero or negative size, entirely outside the image or
      smaller than ``min_box_size`` after clipping are dropped; a missing or
      non-positive ``area`` is recomputed. One summary line gives the count
      per reason with example annotation ids (also kept in
      :attr:`box_report`). An image left without boxes trains as a
      background image (keep ``filter_cfg.filter_empty_gt=False``).

    Args:
        min_box_size (float): Smallest width and height (pixels) of a kept
            box after clipping. Defaults to 1, as mmdet's ``CocoDataset``.
    """

    def __init__(self, *args, min_box_size: float = 1.0, **kwargs) -> None:
        if min_box_size < 0:
            raise ValueError(f'min_box_size must be >= 0, got {min_box_size}')
        self.min_box_size = min_box_size
        self.box_report = {}
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read the json, check its categories (:func:`check_categories`)
        and parse every image, repairing or dropping its boxes."""
        if '://' not in self.ann_file and not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f'{type(self).__name__}: annotation file not found: '
                f'{self.ann_file} (images expected under '
                f'{self.data_prefix.get("img", self.data_root)}). Put COCO '
                f'2017 in data/coco/ (annotations/instances_train2017.json, '
                f'annotations/instances_val2017.json, train2017/, val2017/) '
                f'or set the dataset\'s data_root / ann_file; the raccoon '
                f'configs (configs/*_raccoon.py) run out of the box on the '
                f'shipped data/raccoon.')
        with get_local_path(self.ann_file,
                            backend_args=self.backend_args) as local_path:
            self.coco = self.COCOAPI(local_path)
        ann_counts = Counter(a['category_id']
                             for a in self.coco.dataset.get('annotations', []))
        self.cat_ids = check_categories(
            self.coco.dataset.get('categories', []), self.metainfo['classes'],
            self.ann_file, ann_counts)
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        # Every class, also one without boxes (mmdet's filter_data reads
        # each class's images).
        self.cat_img_map = {
            cat_id: list(self.coco.cat_img_map.get(cat_id, ()))
            for cat_id in self.cat_ids}
        self._box_events = defaultdict(list)
        self._background_images = []
        data_list, ann_ids = [], []
        for img_id in self.coco.get_img_ids():
            raw_img_info = dict(self.coco.load_imgs([img_id])[0],
                                img_id=img_id)
            img_ann_ids = self.coco.get_ann_ids(img_ids=[img_id])
            ann_ids.extend(img_ann_ids)
            data_list.append(self.parse_data_info(dict(
                raw_ann_info=self.coco.load_anns(img_ann_ids),
                raw_img_info=raw_img_info)))
        dup = [i for i, k in Counter(ann_ids).items() if k > 1]
        if self.ANN_ID_UNIQUE and dup:
            raise ValueError(f'{self.ann_file}: annotation ids '
                             f'{_examples(dup)} are used more than once')
        del self.coco
        self._log_box_report()
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """mmdet's parsing after every box was checked and clipped."""
        img_info = raw_data_info['raw_img_info']
        width, height = img_info.get('width'), img_info.get('height')
        if not (isinstance(width, (int, float)) and width > 0
                and isinstance(height, (int, float)) and height > 0):
            raise ValueError(
                f"{self.ann_file}: image id {img_info['img_id']} "
                f"({img_info.get('file_name')}) has width={width!r}, "
                f'height={height!r}; set its true size in "images"')
        anns = [self._sanitize(ann, width, height)
                for ann in raw_data_info['raw_ann_info']]
        anns = [a for a in anns if a is not None]
        if raw_data_info['raw_ann_info'] and not any(
                not a.get('iscrowd', False) for a in anns):
            self._background_images.append(img_info['img_id'])
        return super().parse_data_info(
            dict(raw_data_info, raw_ann_info=anns))

    def _sanitize(self, ann, width, height):
        """The annotation with its box clipped, or None to drop it."""
        if ann.get('ignore', False):
            return ann
        events = self._box_events
        if ann.get('category_id') not in self.cat2label:
            events[DROP_CATEGORY].append(ann.get('id'))
            return None
        bbox = ann.get('bbox')
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
                and all(isinstance(v, (int, float)) and math.isfinite(v)
                        for v in bbox)):
            events[DROP_MALFORMED].append(ann.get('id'))
            return None
        x1, y1, w, h = bbox
        if w <= 0 or h <= 0:
            events[DROP_DEGENERATE].append(ann.get('id'))
            return None
        cx1, cy1 = min(max(x1, 0), width), min(max(y1, 0), height)
        cx2, cy2 = min(max(x1 + w, 0), width), min(max(y1 + h, 0), height)
        if cx2 <= cx1 or cy2 <= cy1:
            events[DROP_OUTSIDE].append(ann.get('id'))
            return None
        cw, ch = cx2 - cx1, cy2 - cy1
        if cw < self.min_box_size or ch < self.min_box_size:
            events[DROP_SMALL].append(ann.get('id'))
            return None
        ann = dict(ann)
        if (cx1, cy1, cw, ch) != (x1, y1, w, h):
            events[CLIPPED].append(ann.get('id'))
            ann['bbox'] = [cx1, cy1, cw, ch]
            ann['area'] = cw * ch
        elif not ann.get('area', 0) > 0:
            ann['area'] = cw * ch
        return ann

    def _log_box_report(self):
        self.box_report = {r: list(self._box_events[r]) for r in REASONS
                           if self._box_events[r]}
        self.box_report['background_images'] = list(self._background_images)
        parts = [f'{len(ids)} boxes {reason} (annotation ids '
                 f'{_examples(ids)})'
                 for reason, ids in self.box_report.items()
                 if reason != 'background_images']
        if self._background_images:
            parts.append(f'{len(self._background_images)} images have no '
                         'valid box left and train as background (image ids '
                         f'{_examples(self._background_images)})')
        if parts:
            print_log(f'{self.ann_file}: ' + '; '.join(parts),
                      logger='current', level=logging.WARNING)
