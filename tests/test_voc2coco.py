"""The VOC -> COCO converter and the dataset that converts on first use."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from rtdetr_zoo.datasets import convert_voc_to_coco

from .utils import REPO_ROOT

RACCOON = osp.join(REPO_ROOT, 'data', 'raccoon')


def test_raccoon_split_is_160_40_and_reproducible(tmp_path):
    paths = convert_voc_to_coco(RACCOON, str(tmp_path / 'a'))
    train = json.load(open(paths['train']))
    val = json.load(open(paths['val']))
    assert len(train['images']) == 160 and len(val['images']) == 40
    names_train = {im['file_name'] for im in train['images']}
    names_val = {im['file_name'] for im in val['images']}
    assert not names_train & names_val
    assert len(names_train | names_val) == 200
    assert train['categories'] == [dict(id=1, name='raccoon')]
    again = convert_voc_to_coco(RACCOON, str(tmp_path / 'b'))
    assert json.load(open(again['val'])) == val
    other = convert_voc_to_coco(RACCOON, str(tmp_path / 'c'), seed=1)
    assert {im['file_name'] for im in json.load(
        open(other['val']))['images']} != names_val


def test_raccoon_1_boxes_are_converted_exactly(tmp_path):
    paths = convert_voc_to_coco(RACCOON, str(tmp_path), val_ratio=0.0)
    coco = json.load(open(paths['train']))
    image = next(im for im in coco['images']
                 if im['file_name'] == 'raccoon-1.jpg')
    assert (image['width'], image['height']) == (650, 417)
    anns = [a for a in coco['annotations'] if a['image_id'] == image['id']]
    assert [a['bbox'] for a in anns] == [[81.0, 88.0, 441.0, 320.0]]
    assert anns[0]['area'] == 441.0 * 320.0


def _mini_voc(root, xml_body, name='a'):
    os.makedirs(root / 'annotations', exist_ok=True)
    os.makedirs(root / 'images', exist_ok=True)
    shutil.copy(osp.join(RACCOON, 'images', 'raccoon-1.jpg'),
                root / 'images' / f'{name}.jpg')
    (root / 'annotations' / f'{name}.xml').write_text(
        f'<annotation><filename>{name}.jpg</filename>{xml_body}'
        '</annotation>')


BOX = ('<object><name>{}</name><bndbox><xmin>1</xmin><ymin>2</ymin>'
       '<xmax>30</xmax><ymax>40</ymax></bndbox></object>')
SIZE = '<size><width>650</width><height>417</height></size>'


def test_missing_size_is_named(tmp_path):
    _mini_voc(tmp_path, BOX.format('cat'))
    with pytest.raises(ValueError, match=r'a\.xml: missing <size>'):
        convert_voc_to_coco(str(tmp_path), str(tmp_path / 'out'))


def test_unknown_class_is_reported(tmp_path):
    _mini_voc(tmp_path, SIZE + BOX.format('dog'))
    with pytest.raises(ValueError, match=r"\['dog'\]"):
        convert_voc_to_coco(str(tmp_path), str(tmp_path / 'out'),
                            classes=['cat'])


def test_empty_folder_and_missing_image(tmp_path):
    os.makedirs(tmp_path / 'annotations')
    with pytest.raises(ValueError, match='no .xml'):
        convert_voc_to_coco(str(tmp_path), str(tmp_path / 'out'))
    _mini_voc(tmp_path, SIZE + BOX.format('cat'))
    os.remove(tmp_path / 'images' / 'a.jpg')
    with pytest.raises(FileNotFoundError, match='a.jpg'):
        convert_voc_to_coco(str(tmp_path), str(tmp_path / 'out'))


def test_cli_writes_both_files(tmp_path):
    out = tmp_path / 'coco'
    proc = subprocess.run(
        [sys.executable, 'tools/dataset_converters/voc2coco.py', RACCOON,
         '--out-dir', str(out)], cwd=REPO_ROOT, capture_output=True,
        text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == ['train.json', 'val.json']
    proc = subprocess.run(
        [sys.executable, 'tools/dataset_converters/voc2coco.py',
         str(tmp_path / 'nowhere'), '--out-dir', str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'annotation folder not found' in proc.stderr


def test_dataset_converts_on_first_use(tmp_path):
    from mmengine.registry import init_default_scope

    from mmdet.registry import DATASETS
    init_default_scope('mmdet')
    root = tmp_path / 'voc'
    shutil.copytree(RACCOON, root)
    shutil.rmtree(root / 'coco', ignore_errors=True)
    dataset = DATASETS.build(dict(
        type='VOCAsCocoDataset', data_root=str(root), ann_file='coco/val.json',
        data_prefix=dict(img='images/'),
        metainfo=dict(classes=('raccoon', )), pipeline=[]))
    assert osp.isfile(root / 'coco' / 'val.json')
    assert len(dataset) == 40
    assert dataset[0]['instances'][0]['bbox_label'] == 0
