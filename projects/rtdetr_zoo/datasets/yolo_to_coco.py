"""Ultralytics' YOLO layout (``data.yaml``, ``images/``, ``labels/``) to COCO.

The layout is Ultralytics' (``ultralytics/data/utils.py``:
``check_det_dataset``, ``img2label_paths``, ``verify_image_label``;
``ultralytics/data/dataset.py``: ``get_img_files``):

* ``data.yaml`` has ``path`` (the dataset root; relative to the yaml's
  folder, which it defaults to), ``train``, ``val``, optional ``test`` and
  ``names`` (a list, or a dict ``{0: name, 1: name, ...}``);
* a split is a folder of images (searched recursively), a ``.txt`` list of
  image paths (relative to ``path``, ``./``-prefixed ones relative to the
  list's folder), or a list of those; split entries are relative to
  ``path``;
* an image's label file replaces the last ``/images/`` of its path with
  ``/labels/`` and its extension with ``.txt``;
* a label line is ``class cx cy w h`` (normalised to [0, 1]) or a polygon
  ``class x1 y1 x2 y2 x3 y3 ...`` (segmentation labels), whose bounding box
  is used.

Bad labels: a class id outside ``names`` or a line with the wrong number of
fields is an error naming the file and line; coordinates outside [0, 1] are
clipped, exact duplicate boxes removed, an image without a label file trains
as background and a label file without an image is skipped, all counted in
one log line (also kept in the json's ``info.report``).
"""
import glob
import hashlib
import json
import logging
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import yaml
from mmengine.logging import print_log
from mmengine.utils import track_iter_progress
from PIL import Image

from .voc_to_coco import inspect_image

# Ultralytics' IMG_FORMATS (ultralytics/data/utils.py).
YOLO_IMAGE_FORMATS = ('bmp', 'dng', 'jpeg', 'jpg', 'mpo', 'png', 'tif',
                      'tiff', 'webp', 'pfm', 'heic')
SPLITS = ('train', 'val', 'test')
MAX_EXAMPLES = 5
# Conversions of at least this many images show a progress bar with ETA.
PROGRESS_MIN_IMAGES = 5000
# Bumped when the conversion changes, so that cached json files are redone.
CONVERTER_VERSION = 1
# EXIF orientations that swap width and height (cv2.imread applies them).
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def _examples(items):
    shown = ', '.join(str(i) for i in items[:MAX_EXAMPLES])
    return shown + (', ...' if len(items) > MAX_EXAMPLES else '')


def _class_names(names, yaml_path):
    """``names`` of a data.yaml (list or ``{index: name}``) as a list."""
    if isinstance(names, dict):
        try:
            by_index = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise ValueError(
                f'{yaml_path}: "names" keys must be class indices 0, 1, ...; '
                f'got {list(names)}') from None
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError(
                f'{yaml_path}: "names" keys must be 0..{len(by_index) - 1} '
                f'without gaps; got {sorted(by_index)}')
        names = [by_index[i] for i in range(len(by_index))]
    elif isinstance(names, (list, tuple)):
        names = [str(n) for n in names]
    else:
        raise ValueError(f'{yaml_path}: "names" must be a list or a dict '
                         f'{{0: name, ...}}; got {names!r}')
    if not names:
        raise ValueError(f'{yaml_path}: "names" is empty')
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f'{yaml_path}: class names {dup} appear more than '
                         'once in "names"; make them unique')
    return names


def read_data_yaml(yaml_path: str) -> dict:
    """Read an Ultralytics ``data.yaml``.

    Args:
        yaml_path (str): The yaml file.

    Returns:
        dict: ``root`` (the absolute dataset root: ``path`` resolved against
        the yaml's folder), ``names`` (list of class names, index order),
        ``splits`` (``{'train': [...], 'val': [...], ...}``: the split
        entries as absolute paths) and ``yaml_path``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a yaml mapping, ``names`` or a split missing or
            malformed, ``nc`` differing from the number of names.
    """
    if not osp.isfile(yaml_path):
        raise FileNotFoundError(f'YOLO data.yaml not found: {yaml_path}')
    with open(yaml_path, encoding='utf-8') as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ValueError(f'{yaml_path}: not valid YAML ({err})') from None
    if not isinstance(data, dict):
        raise ValueError(f'{yaml_path}: expected a mapping with "names", '
                         f'"train" and "val"; got {type(data).__name__}')
    if 'names' not in data:
        raise ValueError(f'{yaml_path}: no "names" (the class names, a list '
                         'or a dict {0: name, ...})')
    names = _class_names(data['names'], yaml_path)
    if 'nc' in data and data['nc'] != len(names):
        raise ValueError(f'{yaml_path}: nc={data["nc"]} but "names" has '
                         f'{len(names)} entries')
    yaml_dir = osp.dirname(osp.abspath(yaml_path))
    root = osp.normpath(osp.join(yaml_dir, str(data.get('path') or '.')))
    splits = {}
    for split in SPLITS:
        entries = data.get(split)
        if entries is None:
            continue
        entries = entries if isinstance(entries, (list, tuple)) else [
            entries]
        splits[split] = [osp.normpath(osp.join(root, str(e)))
                         for e in entries]
    for split in ('train', 'val'):
        if split not in splits:
            raise ValueError(f'{yaml_path}: no "{split}" split (a folder of '
                             'images, a .txt list of image paths, or a list '
                             'of those, relative to "path")')
    return dict(root=root, names=names, splits=splits, yaml_path=yaml_path)


def _is_image(path):
    return path.rsplit('.', 1)[-1].lower() in YOLO_IMAGE_FORMATS


def _relative_to_list(line, list_path, root):
    """An image path of a .txt split list: ``./x`` is relative to the
    list's folder, any other relative path to the dataset root."""
    if line.startswith('./'):
        return osp.normpath(osp.join(osp.dirname(list_path), line[2:]))
    return osp.normpath(osp.join(root, line))


def list_split_images(entries: List[str], root: str, yaml_path: str,
                      split: str) -> List[str]:
    """The sorted absolute image paths of a split (Ultralytics'
    ``get_img_files``).

    Args:
        entries (list[str]): Absolute split entries: folders (searched
            recursively) or .txt lists of image paths.
        root (str): The dataset root, for relative paths in .txt lists.
        yaml_path (str), split (str): Named in the messages.

    Raises:
        FileNotFoundError: an entry, or an image a list names, is missing.
        ValueError: the split has no image.
    """
    images = []
    for entry in entries:
        if osp.isdir(entry):
            images += [p for p in glob.glob(osp.join(entry, '**', '*.*'),
                                            recursive=True) if _is_image(p)]
        elif osp.isfile(entry):
            with open(entry, encoding='utf-8') as f:
                lines = [ln.strip() for ln in f.read().splitlines()]
            for line_no, line in enumerate(lines, start=1):
                if not line:
                    continue
                path = _relative_to_list(line, entry, root)
                if not osp.isfile(path):
                    raise FileNotFoundError(
                        f'{entry}, line {line_no}: image {path} not found '
                        f'(the "{split}" split of {yaml_path})')
                if _is_image(path):
                    images.append(path)
        else:
            raise FileNotFoundError(
                f'{yaml_path}: the "{split}" split entry {entry} is neither '
                'a folder nor a .txt list of images')
    images = sorted(set(images))
    if not images:
        raise ValueError(f'{yaml_path}: no images in the "{split}" split '
                         f'({", ".join(entries)}); image extensions: '
                         f'{", ".join(YOLO_IMAGE_FORMATS)}')
    return images


def label_path_of(image_path: str) -> str:
    """Ultralytics' ``img2label_paths``: the last ``/images/`` of the path
    becomes ``/labels/`` and the extension ``.txt``."""
    images_dir = f'{os.sep}images{os.sep}'
    labels_dir = f'{os.sep}labels{os.sep}'
    return labels_dir.join(image_path.rsplit(images_dir, 1)).rsplit(
        '.', 1)[0] + '.txt'


def _label_files_near(entries, images):
    """Every ``.txt`` in the label folders of a split: the ``labels``
    counterpart of each split folder (recursively) and the folders of the
    listed images' label files."""
    found = set()
    for entry in entries:
        if osp.isdir(entry):
            labels_dir = osp.dirname(label_path_of(osp.join(entry, 'x.jpg')))
            found.update(glob.glob(osp.join(labels_dir, '**', '*.txt'),
                                   recursive=True))
    for label_dir in {osp.dirname(label_path_of(p)) for p in images}:
        found.update(glob.glob(osp.join(label_dir, '*.txt')))
    return sorted(found)


def parse_label_file(path: str, num_classes: int,
                     yaml_path: str = '') -> Tuple[list, dict]:
    """Read one YOLO label file.

    Args:
        path (str): The ``.txt`` label file.
        num_classes (int): Number of names in data.yaml (valid ids
            ``0..num_classes - 1``).
        yaml_path (str): Named in the messages.

    Returns:
        tuple[list, dict]: ``(class_id, x1, y1, x2, y2)`` boxes normalised to
        [0, 1] (clipped, exact duplicates removed, polygon lines replaced by
        their bounding box) and the events ``clipped``, ``duplicates``
        (``'file:line'`` strings) and ``polygons`` (count).

    Raises:
        ValueError: a line whose field count is neither 5 (box) nor odd and
            at least 7 (polygon), a non-numeric or non-finite field, or a
            class id that is not an integer of ``0..num_classes - 1``; the
            message names the file and the line.
    """
    boxes, seen = [], set()
    events = dict(clipped=[], duplicates=[], polygons=0)
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    for line_no, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f'{path}, line {line_no}'
        if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
            raise ValueError(
                f'{where}: {len(fields)} fields ({line.strip()!r}); a YOLO '
                'label line is "class cx cy w h" (5 fields) or a polygon '
                '"class x1 y1 x2 y2 x3 y3 ..." (an odd number, at least 7)')
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise ValueError(f'{where}: not numbers ({line.strip()!r})') \
                from None
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f'{where}: non-finite value ({line.strip()!r})')
        class_id = values[0]
        if class_id != int(class_id) or not 0 <= class_id < num_classes:
            raise ValueError(
                f'{where}: class id {fields[0]} is outside "names" of '
                f'{yaml_path or "data.yaml"} (valid ids: 0..'
                f'{num_classes - 1}, {num_classes} classes)')
        coords = values[1:]
        if len(fields) == 5:
            cx, cy, w, h = coords
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        else:
            xs, ys = coords[0::2], coords[1::2]
            box = [min(xs), min(ys), max(xs), max(ys)]
            events['polygons'] += 1
        clipped = [min(max(v, 0.0), 1.0) for v in box]
        if clipped != box:
            events['clipped'].append(f'{path}:{line_no}')
        row = (int(class_id), *clipped)
        if row in seen:
            events['duplicates'].append(f'{path}:{line_no}')
            continue
        seen.add(row)
        boxes.append(row)
    return boxes, events


def image_size(path: str) -> Tuple[int, int]:
    """``(width, height)`` of an image as OpenCV decodes it (EXIF rotation
    applied, as Ultralytics' ``exif_size``).

    Raises:
        ValueError: the file is empty, unreadable or truncated.
    """
    width, height = inspect_image(path)
    with Image.open(path) as img:
        orientation = img.getexif().get(0x0112, 1)
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return width, height


def _fingerprint(names, images, label_files):
    """A hash of the names and of every image and label file's path, size
    and modification time."""
    def stat(path):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return [st.st_size, st.st_mtime_ns]

    listing = [CONVERTER_VERSION, names,
               [[p, stat(p), stat(label_path_of(p))] for p in images],
               label_files]
    return hashlib.sha1(json.dumps(listing).encode()).hexdigest()


def _scan_split(data, split):
    if split not in data['splits']:
        raise ValueError(f'{data["yaml_path"]}: no "{split}" split (it has '
                         f'{", ".join(data["splits"])})')
    entries = data['splits'][split]
    images = list_split_images(entries, data['root'], data['yaml_path'],
                               split)
    return images, _label_files_near(entries, images)


def _file_name(path, root):
    rel = osp.relpath(path, root)
    return path if rel.startswith('..') else rel.replace(os.sep, '/')


def yolo_split_to_coco(data: dict, split: str,
                       images: Optional[List[str]] = None,
                       label_files: Optional[List[str]] = None) -> dict:
    """Convert one split of a YOLO dataset into a COCO dict.

    Args:
        data (dict): :func:`read_data_yaml`'s result.
        split (str): ``'train'``, ``'val'`` or ``'test'``.
        images, label_files (list[str], optional): The split's images and
            the label files near them, when already listed.

    Returns:
        dict: COCO ``images`` (``file_name`` relative to the dataset root,
        absolute when outside it), ``annotations`` (pixel ``bbox``),
        ``categories`` (``id`` = YOLO class + 1) and ``info`` (``data_yaml``,
        ``split``, ``fingerprint`` and the ``report`` of
        :func:`format_report`).

    Raises:
        ValueError: bad label lines (file and line named), unreadable
            images (all listed).
    """
    if images is None:
        images, label_files = _scan_split(data, split)
    names, yaml_path = data['names'], data['yaml_path']
    expected_labels = {label_path_of(p) for p in images}
    report = dict(images=len(images), boxes=0, background_images=[],
                  empty_label_files=0, clipped=[], duplicates=[],
                  polygons=0,
                  labels_without_image=[p for p in label_files
                                        if p not in expected_labels])
    coco_images, annotations, bad_images = [], [], []
    numbered = list(enumerate(images, start=1))
    if len(images) >= PROGRESS_MIN_IMAGES:
        print_log(f'{yaml_path} [{split}]: reading {len(images)} images and '
                  'their labels', logger='current')
        numbered = track_iter_progress(numbered)
    for image_id, path in numbered:
        try:
            width, height = image_size(path)
        except ValueError as err:
            bad_images.append(f'{path}: {err}')
            continue
        coco_images.append(dict(id=image_id, file_name=_file_name(
            path, data['root']), width=width, height=height))
        label_path = label_path_of(path)
        if not osp.isfile(label_path):
            report['background_images'].append(path)
            continue
        boxes, events = parse_label_file(label_path, len(names), yaml_path)
        if not boxes:
            report['empty_label_files'] += 1
        for key in ('clipped', 'duplicates'):
            report[key] += events[key]
        report['polygons'] += events['polygons']
        for class_id, x1, y1, x2, y2 in boxes:
            w, h = (x2 - x1) * width, (y2 - y1) * height
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id,
                category_id=class_id + 1,
                bbox=[x1 * width, y1 * height, w, h], area=w * h,
                iscrowd=0))
    if bad_images:
        raise ValueError(
            f'{yaml_path}: {len(bad_images)} unreadable images in the '
            f'"{split}" split:\n  ' + '\n  '.join(bad_images[:10]) +
            (f'\n  ... and {len(bad_images) - 10} more'
             if len(bad_images) > 10 else ''))
    report['boxes'] = len(annotations)
    return dict(
        info=dict(description='converted from the YOLO layout by rtdetr_zoo',
                  data_yaml=osp.abspath(yaml_path), split=split,
                  fingerprint=_fingerprint(names, images, label_files),
                  report=report),
        images=coco_images, annotations=annotations,
        categories=[dict(id=i + 1, name=n) for i, n in enumerate(names)])


def format_report(report: dict, source: str) -> str:
    """One log line of what a conversion found and repaired."""
    parts = [f'{report["images"]} images, {report["boxes"]} boxes']
    if report['background_images']:
        parts.append(f'{len(report["background_images"])} images without a '
                     'label file train as background ('
                     f'{_examples(report["background_images"])})')
    if report['empty_label_files']:
        parts.append(f'{report["empty_label_files"]} empty label files '
                     '(background images)')
    if report['labels_without_image']:
        parts.append(f'{len(report["labels_without_image"])} label files '
                     'without an image skipped ('
                     f'{_examples(report["labels_without_image"])})')
    if report['clipped']:
        parts.append(f'{len(report["clipped"])} boxes with coordinates '
                     'outside [0, 1] clipped '
                     f'({_examples(report["clipped"])})')
    if report['duplicates']:
        parts.append(f'{len(report["duplicates"])} duplicate boxes removed '
                     f'({_examples(report["duplicates"])})')
    if report['polygons']:
        parts.append(f'{report["polygons"]} polygon labels turned into '
                     'their bounding boxes')
    return f'{source}: ' + '; '.join(parts)


def _write_json(coco, out_file):
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    tmp_path = out_file + '.tmp'
    with open(tmp_path, 'w') as f:
        json.dump(coco, f)
    os.replace(tmp_path, out_file)


def _log_report(report, source):
    level = logging.WARNING if any(
        report[k] for k in ('background_images', 'empty_label_files',
                            'labels_without_image', 'clipped',
                            'duplicates')) else logging.INFO
    print_log(format_report(report, source), logger='current', level=level)


def convert_yolo_split_cached(yaml_path: str, split: str,
                              out_file: str) -> dict:
    """Write ``out_file`` (COCO json of one split) unless it is up to date.

    The json records a fingerprint of the names and of every image and
    label file (path, size, modification time); it is rewritten when any of
    them changed. The conversion report is logged either way.

    Returns:
        dict: The conversion report.
    """
    data = read_data_yaml(yaml_path)
    images, label_files = _scan_split(data, split)
    fingerprint = _fingerprint(data['names'], images, label_files)
    source = f'{yaml_path} [{split}]'
    if osp.isfile(out_file):
        with open(out_file) as f:
            info = json.load(f).get('info', {})
        if info.get('fingerprint') == fingerprint:
            _log_report(info['report'], f'{source} (cached in {out_file})')
            return info['report']
    coco = yolo_split_to_coco(data, split, images, label_files)
    _write_json(coco, out_file)
    _log_report(coco['info']['report'], f'{source} -> {out_file}')
    return coco['info']['report']


def convert_yolo_to_coco(yaml_path: str, out_dir: str,
                         splits: Optional[Sequence[str]] = None
                         ) -> Dict[str, str]:
    """Convert the splits of a YOLO dataset into ``OUT_DIR/<split>.json``.

    Args:
        yaml_path (str): The dataset's ``data.yaml``.
        out_dir (str): Where to write the json files.
        splits (Sequence[str], optional): Default: every split data.yaml
            names (``train``, ``val`` and ``test`` when present).

    Returns:
        dict: ``{split: json path}``.
    """
    data = read_data_yaml(yaml_path)
    paths = {}
    for split in splits or list(data['splits']):
        coco = yolo_split_to_coco(data, split)
        paths[split] = osp.join(out_dir, f'{split}.json')
        _write_json(coco, paths[split])
        _log_report(coco['info']['report'],
                    f'{yaml_path} [{split}] -> {paths[split]}')
    return paths
