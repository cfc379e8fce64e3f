"""Pascal VOC (images + XML) to COCO json, with a reproducible split."""
import json
import logging
import os
import os.path as osp
import random
import re
import xml.etree.ElementTree as ET
from typing import Dict, Optional, Sequence, Tuple

from mmengine.logging import print_log
from PIL import Image, UnidentifiedImageError

from .safe_loading import jpeg_is_truncated

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
MAX_LISTED = 10


def _natural_key(name):
    return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name)]


def _text(node, tag, xml_path):
    child = node.find(tag)
    if child is None or child.text is None:
        raise ValueError(f'{xml_path}: missing <{tag}>')
    return child.text.strip()


def _resolve_image(image_dir, file_name, xml_path):
    """``file_name``, or the file with the same stem and another image
    extension (VOC files often say ``x.jpg`` for ``x.png``, or give no
    extension)."""
    if osp.isfile(osp.join(image_dir, file_name)):
        return file_name
    stem = osp.splitext(file_name)[0] if osp.splitext(file_name)[1].lower(
    ) in IMAGE_EXTENSIONS else file_name
    for ext in IMAGE_EXTENSIONS:
        for candidate in (stem + ext, stem + ext.upper()):
            if osp.isfile(osp.join(image_dir, candidate)):
                return candidate
    raise FileNotFoundError(
        f'{xml_path}: image {osp.join(image_dir, file_name)} not found (nor '
        f'{stem} with another extension of {IMAGE_EXTENSIONS})')


def inspect_image(path: str) -> Tuple[int, int]:
    """The ``(width, height)`` of an image file, read from its header.

    Raises:
        ValueError: the file is empty, not a readable image, or a truncated
            JPEG/PNG.
    """
    with open(path, 'rb') as f:
        data = f.read()
    if not data:
        raise ValueError('image file is empty')
    if jpeg_is_truncated(data):
        raise ValueError('JPEG file is truncated (no end-of-image marker)')
    try:
        with Image.open(path) as img:
            size = img.size
            if img.format != 'JPEG':
                img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f'not a readable image ({err})') from None
    return size


def parse_voc_xml(xml_path: str, image_dir: str) -> dict:
    """Read one VOC annotation.

    Returns:
        dict: ``file_name``, ``width``, ``height`` and ``objects`` (a list of
        ``(class_name, [x1, y1, x2, y2])`` in pixels, VOC's 1-based corners
        kept as given).
    """
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as err:
        raise ValueError(f'{xml_path}: not valid XML ({err})') from None
    file_name = _resolve_image(image_dir, _text(root, 'filename', xml_path),
                               xml_path)
    size = root.find('size')
    if size is None:
        raise ValueError(f'{xml_path}: missing <size>')
    width = int(float(_text(size, 'width', xml_path)))
    height = int(float(_text(size, 'height', xml_path)))
    objects = []
    for obj in root.iter('object'):
        box = obj.find('bndbox')
        if box is None:
            raise ValueError(f'{xml_path}: <object> without <bndbox>')
        coords = [float(_text(box, t, xml_path))
                  for t in ('xmin', 'ymin', 'xmax', 'ymax')]
        objects.append((_text(obj, 'name', xml_path), coords))
    return dict(file_name=file_name, width=width, height=height,
                objects=objects)


def _check_images(records, image_dir, skip_bad_images):
    """Check every image is readable and of its ``<size>``; drop or raise."""
    problems, keep = [], []
    for record in records:
        xml_name = record['xml_file']
        path = osp.join(image_dir, record['file_name'])
        try:
            width, height = inspect_image(path)
        except ValueError as err:
            problems.append(f'{xml_name}: {path}: {err}')
            continue
        if record['width'] <= 0 or record['height'] <= 0:
            record['width'], record['height'] = width, height
        elif (width, height) != (record['width'], record['height']):
            problems.append(
                f"{xml_name}: {path}: <size> says {record['width']}x"
                f"{record['height']} but the image is {width}x{height} "
                '(width x height)')
            continue
        keep.append(record)
    if not problems:
        return records
    listing = '\n  '.join(problems[:MAX_LISTED])
    more = (f'\n  ... and {len(problems) - MAX_LISTED} more'
            if len(problems) > MAX_LISTED else '')
    if not skip_bad_images:
        raise ValueError(
            f'{len(problems)} bad images:\n  {listing}{more}\nfix them, or '
            'pass skip_bad_images=True to leave them out')
    print_log(f'leaving out {len(problems)} bad images:\n  {listing}{more}',
              logger='current', level=logging.WARNING)
    if not keep:
        raise ValueError(f'no usable image left in {image_dir}')
    return keep


def convert_voc_to_coco(voc_root: str,
                        out_dir: str,
                        val_ratio: float = 0.2,
                        seed: int = 0,
                        classes: Optional[Sequence[str]] = None,
                        ann_dir: str = 'annotations',
                        img_dir: str = 'images',
                        skip_bad_images: bool = False) -> Dict[str, str]:
    """Convert a VOC folder into ``train.json`` and ``val.json`` (COCO).

    The split is reproducible: annotation files are sorted naturally, shuffled
    with ``random.Random(seed)`` and the first ``round(n * val_ratio)`` go to
    val (raccoon: 40 of 200).

    Args:
        voc_root (str): Folder holding ``ann_dir`` (XML) and ``img_dir``.
        out_dir (str): Where to write the two json files.
        val_ratio (float): Fraction of images in the val split.
        seed (int): Shuffle seed.
        classes (Sequence[str], optional): Class names, in id order (ids
            start at 1). Default: the sorted names found in the XML files.
        ann_dir, img_dir (str): Sub-folders of ``voc_root``.
        skip_bad_images (bool): Leave out (with a logged list) images that
            are unreadable, truncated or not of their ``<size>``, instead of
            raising ``ValueError`` listing them. A ``<size>`` of 0 is replaced
            by the real size.

    Returns:
        dict: paths ``{'train': ..., 'val': ...}``.
    """
    xml_dir = osp.join(voc_root, ann_dir)
    image_dir = osp.join(voc_root, img_dir)
    if not osp.isdir(xml_dir):
        raise FileNotFoundError(f'VOC annotation folder not found: {xml_dir}')
    xml_files = sorted(
        (f for f in os.listdir(xml_dir) if f.endswith('.xml')),
        key=_natural_key)
    if not xml_files:
        raise ValueError(f'no .xml annotation files in {xml_dir}')
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f'val_ratio must be in [0, 1), got {val_ratio}')
    records = [dict(parse_voc_xml(osp.join(xml_dir, f), image_dir),
                    xml_file=f) for f in xml_files]
    records = _check_images(records, image_dir, skip_bad_images)
    found = sorted({name for r in records for name, _ in r['objects']})
    classes = list(classes) if classes else found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        where = [r['xml_file'] for r in records
                 if any(n in unknown for n, _ in r['objects'])]
        raise ValueError(
            f'{xml_dir}: class names {unknown} are not in classes={classes} '
            f"(in {', '.join(where[:MAX_LISTED])}"
            f"{' ...' if len(where) > MAX_LISTED else ''}); add them to "
            'classes or fix those files')
    cat_ids = {name: i + 1 for i, name in enumerate(classes)}

    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    num_val = round(len(records) * val_ratio)
    splits = dict(val=sorted(order[:num_val]), train=sorted(order[num_val:]))

    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for split, indices in splits.items():
        images, annotations = [], []
        for image_id, idx in enumerate(indices, start=1):
            record = records[idx]
            images.append(dict(id=image_id, file_name=record['file_name'],
                               width=record['width'],
                               height=record['height']))
            for name, (x1, y1, x2, y2) in record['objects']:
                w, h = x2 - x1, y2 - y1
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id,
                    category_id=cat_ids[name], bbox=[x1, y1, w, h],
                    area=w * h, iscrowd=0))
        coco = dict(
            images=images, annotations=annotations,
            categories=[dict(id=i, name=n) for n, i in cat_ids.items()])
        paths[split] = osp.join(out_dir, f'{split}.json')
        tmp_path = paths[split] + '.tmp'
        with open(tmp_path, 'w') as f:
            json.dump(coco, f)
        os.replace(tmp_path, paths[split])
    return paths
