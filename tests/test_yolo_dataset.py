"""Ultralytics YOLO-layout datasets (rtdetr_zoo.datasets.YOLODataset and
yolo_to_coco), the custom-data template's run-time resolution
(resolve_custom_data) and the yolo2coco converter tool."""
import copy
import json
import os
import os.path as osp
import re
import runpy
import sys
import uuid

import pytest
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import HOOKS
from PIL import Image

from mmdet.registry import DATASETS
from rtdetr_zoo.datasets import (label_path_of, read_data_yaml,
                                 resolve_custom_data)

from .utils import REPO_ROOT, config_path, load_config

IMAGE_SIZE = (64, 48)  # width, height


@pytest.fixture
def log_text(tmp_path):
    """A fresh current MMLogger writing to a file; returns a reader."""
    log_file = tmp_path / 'log.txt'
    MMLogger.get_instance(f'yolo_test_{uuid.uuid4().hex}',
                          log_file=str(log_file))
    return lambda: log_file.read_text()


def write_image(path, size=IMAGE_SIZE):
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.new('RGB', size, (120, 80, 40)).save(path)


def write_yolo(root, splits, names=('cat', 'dog'), data_yaml=None):
    """A YOLO dataset under ``root``: ``splits`` maps a split to
    ``{stem: label text, or None for no label file}``; images are
    ``images/<split>/<stem>.jpg``. Returns the data.yaml path."""
    for split, items in splits.items():
        for stem, label in items.items():
            image = osp.join(root, 'images', split, f'{stem}.jpg')
            write_image(image)
            if label is not None:
                os.makedirs(osp.dirname(label_path_of(image)), exist_ok=True)
                with open(label_path_of(image), 'w') as f:
                    f.write(label)
    if data_yaml is None:
        listing = '\n'.join(f'  - {n}' for n in names)
        data_yaml = ('path: .\ntrain: images/train\nval: images/val\n'
                     f'names:\n{listing}\n')
    path = osp.join(root, 'data.yaml')
    with open(path, 'w') as f:
        f.write(data_yaml)
    return path


def build_dataset(root, split='train', **kwargs):
    return DATASETS.build(dict(
        type='YOLODataset', data_root=str(root), data_yaml='data.yaml',
        split=split, ann_file=f'coco_from_yolo/{split}.json', pipeline=[],
        **kwargs))


def boxes_of(dataset):
    return {osp.basename(d['img_path']): [
        (i['bbox_label'], [round(v, 4) for v in i['bbox']])
        for i in d['instances']] for d in data_infos(dataset)}


def data_infos(dataset):
    return [dataset.get_data_info(i) for i in range(len(dataset))]


TWO_VAL = {'v1': '0 0.5 0.5 0.5 0.5\n', 'v2': '1 0.25 0.25 0.5 0.5\n'}


def test_names_as_list_and_as_dict(tmp_path):
    list_root, dict_root = tmp_path / 'list', tmp_path / 'dict'
    write_yolo(str(list_root), {'train': {'a': '1 0.5 0.5 0.5 0.5\n'},
                                'val': TWO_VAL}, names=('cat', 'dog'))
    write_yolo(str(dict_root), {'train': {'a': '1 0.5 0.5 0.5 0.5\n'},
                                'val': TWO_VAL},
               data_yaml='path: .\ntrain: images/train\nval: images/val\n'
               'names:\n  0: cat\n  1: dog\n')
    for root in (list_root, dict_root):
        dataset = build_dataset(root)
        assert dataset.metainfo['classes'] == ('cat', 'dog')
        # Class 1 of the label file is 'dog': label 1, pixel box.
        assert boxes_of(dataset) == {'a.jpg': [(1, [16.0, 12.0, 48.0, 36.0])]}


def test_names_with_gaps_and_metainfo_mismatch_are_errors(tmp_path):
    write_yolo(str(tmp_path), {'train': {'a': ''}, 'val': TWO_VAL},
               data_yaml='train: images/train\nval: images/val\n'
               'names:\n  0: cat\n  2: dog\n')
    with pytest.raises(ValueError, match=r'data\.yaml: "names" keys must be '
                       r'0\.\.1 without gaps; got \[0, 2\]'):
        build_dataset(tmp_path)
    write_yolo(str(tmp_path), {}, names=('cat', 'dog'))
    with pytest.raises(ValueError, match=r"metainfo classes \('dog', 'cat'\) "
                       r"differ from its \"names\" \('cat', 'dog'\)"):
        build_dataset(tmp_path, metainfo=dict(classes=('dog', 'cat')))


def test_split_as_folder_and_as_txt_list(tmp_path):
    labels = {'a': '0 0.5 0.5 0.2 0.2\n', 'b': '1 0.5 0.5 0.4 0.4\n',
              'c': '0 0.1 0.1 0.1 0.1\n'}
    write_yolo(str(tmp_path), {'train': labels, 'val': TWO_VAL})
    by_folder = boxes_of(build_dataset(tmp_path))
    # A list with a ./-prefixed line (relative to the list's folder), a
    # line relative to the dataset root and an absolute path.
    os.makedirs(tmp_path / 'lists')
    (tmp_path / 'lists' / 'train.txt').write_text(
        './../images/train/a.jpg\n'
        'images/train/b.jpg\n' + str(tmp_path / 'images/train/c.jpg') + '\n')
    (tmp_path / 'data.yaml').write_text(
        'path: .\ntrain: lists/train.txt\nval: [images/val]\n'
        'names: [cat, dog]\n')
    by_list = build_dataset(tmp_path)
    assert boxes_of(by_list) == by_folder
    assert len(by_folder) == 3
    assert by_folder['b.jpg'] == [(1, [19.2, 14.4, 44.8, 33.6])]


def test_dataset_root_path_relative_to_yaml_folder(tmp_path):
    write_yolo(str(tmp_path / 'data'), {'train': {'a': '0 0.5 0.5 1 1\n'},
                                        'val': TWO_VAL})
    (tmp_path / 'cfg').mkdir()
    (tmp_path / 'cfg' / 'data.yaml').write_text(
        'path: ../data\ntrain: images/train\nval: images/val\nnames: [x, y]\n')
    data = read_data_yaml(str(tmp_path / 'cfg' / 'data.yaml'))
    assert data['root'] == str(tmp_path / 'data')
    assert data['splits']['train'] == [str(tmp_path / 'data/images/train')]
    dataset = build_dataset(tmp_path / 'cfg')
    assert boxes_of(dataset) == {'a.jpg': [(0, [0.0, 0.0, 64.0, 48.0])]}
    assert data_infos(dataset)[0]['img_path'] == str(
        tmp_path / 'data/images/train/a.jpg')


def test_polygon_lines_become_their_boxes(tmp_path, log_text):
    write_yolo(str(tmp_path), {'train': {
        'a': '0 0.25 0.5 0.5 0.25 0.75 0.5 0.5 0.75\n'
             '1 0.5 0.5 0.5 0.5\n'}, 'val': TWO_VAL})
    dataset = build_dataset(tmp_path)
    assert boxes_of(dataset) == {'a.jpg': [(0, [16.0, 12.0, 48.0, 36.0]),
                                           (1, [16.0, 12.0, 48.0, 36.0])]}
    assert '1 polygon labels turned into their bounding boxes' in log_text()


def test_class_id_outside_names_is_an_error(tmp_path):
    write_yolo(str(tmp_path), {'train': {
        'a': '0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n'}, 'val': TWO_VAL})
    label = osp.join(tmp_path, 'labels', 'train', 'a.txt')
    with pytest.raises(ValueError) as err:
        build_dataset(tmp_path)
    assert str(err.value) == (
        f'{label}, line 2: class id 2 is outside "names" of '
        f'{osp.join(tmp_path, "data.yaml")} (valid ids: 0..1, 2 classes)')


@pytest.mark.parametrize('line', ['0 0.5 0.5 0.2', '0 0.5 0.5 0.2 0.2 0.9',
                                  '0 0.1 0.1 0.2 0.2 0.3 0.3 0.4'])
def test_wrong_number_of_fields_names_file_and_line(tmp_path, line):
    write_yolo(str(tmp_path), {'train': {
        'a': f'1 0.5 0.5 0.2 0.2\n\n{line}\n'}, 'val': TWO_VAL})
    label = osp.join(tmp_path, 'labels', 'train', 'a.txt')
    with pytest.raises(ValueError, match=rf'^{label}, line 3: '
                       rf'{len(line.split())} fields'):
        build_dataset(tmp_path)


def test_non_numeric_field_names_file_and_line(tmp_path):
    write_yolo(str(tmp_path), {'train': {'a': 'dog 0.5 0.5 0.2 0.2\n'},
                               'val': TWO_VAL})
    label = osp.join(tmp_path, 'labels', 'train', 'a.txt')
    with pytest.raises(ValueError, match=rf'^{label}, line 1: not numbers'):
        build_dataset(tmp_path)


def test_coordinates_outside_unit_range_are_clipped_and_counted(
        tmp_path, log_text):
    write_yolo(str(tmp_path), {'train': {
        'a': '0 0.9 0.5 0.4 0.2\n1 0.5 0.5 0.2 0.2\n',
        'b': '0 0.5 -0.1 0.2 0.4\n'}, 'val': TWO_VAL})
    dataset = build_dataset(tmp_path)
    assert boxes_of(dataset) == {
        'a.jpg': [(0, [44.8, 19.2, 64.0, 28.8]),
                  (1, [25.6, 19.2, 38.4, 28.8])],
        'b.jpg': [(0, [25.6, 0.0, 38.4, 4.8])]}
    assert dataset.yolo_report['clipped'] == [
        osp.join(tmp_path, 'labels/train/a.txt:1'),
        osp.join(tmp_path, 'labels/train/b.txt:1')]
    assert '2 boxes with coordinates outside [0, 1] clipped' in log_text()


def test_image_without_label_file_is_background(tmp_path, log_text):
    write_yolo(str(tmp_path), {'train': {
        'a': '0 0.5 0.5 0.2 0.2\n', 'b': None, 'c': ''}, 'val': TWO_VAL})
    dataset = build_dataset(tmp_path)
    boxes = boxes_of(dataset)
    assert sorted(boxes) == ['a.jpg', 'b.jpg', 'c.jpg']
    assert boxes['b.jpg'] == [] and boxes['c.jpg'] == []
    log = log_text()
    assert ('1 images without a label file train as background ('
            f'{osp.join(tmp_path, "images/train/b.jpg")})') in log
    assert '1 empty label files (background images)' in log


def test_label_file_without_image_is_skipped_and_counted(tmp_path, log_text):
    write_yolo(str(tmp_path), {'train': {'a': '0 0.5 0.5 0.2 0.2\n'},
                               'val': TWO_VAL})
    orphan = tmp_path / 'labels' / 'train' / 'gone.txt'
    orphan.write_text('0 0.5 0.5 0.2 0.2\n')
    dataset = build_dataset(tmp_path)
    assert len(dataset) == 1
    assert dataset.yolo_report['labels_without_image'] == [str(orphan)]
    assert f'1 label files without an image skipped ({orphan})' in log_text()


def test_duplicate_boxes_are_removed_and_counted(tmp_path, log_text):
    write_yolo(str(tmp_path), {'train': {
        'a': '0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n'
             '0 0.500000 0.5 0.2 0.2\n'}, 'val': TWO_VAL})
    dataset = build_dataset(tmp_path)
    assert boxes_of(dataset) == {'a.jpg': [(0, [25.6, 19.2, 38.4, 28.8]),
                                           (1, [25.6, 19.2, 38.4, 28.8])]}
    assert '2 duplicate boxes removed' in log_text()


def test_json_is_cached_and_redone_when_a_label_changes(tmp_path, log_text):
    write_yolo(str(tmp_path), {'train': {'a': '0 0.5 0.5 0.2 0.2\n'},
                               'val': TWO_VAL})
    build_dataset(tmp_path)
    ann_file = tmp_path / 'coco_from_yolo' / 'train.json'
    assert ann_file.is_file()
    build_dataset(tmp_path)
    assert f'(cached in {ann_file})' in log_text()
    (tmp_path / 'labels' / 'train' / 'a.txt').write_text(
        '1 0.5 0.5 0.4 0.4\n0 0.5 0.5 0.2 0.2\n')
    assert len(boxes_of(build_dataset(tmp_path))['a.jpg']) == 2


def run_converter(monkeypatch, *args):
    """tools/dataset_converters/yolo2coco.py with ``args``, in-process."""
    tool = osp.join(REPO_ROOT, 'tools', 'dataset_converters', 'yolo2coco.py')
    monkeypatch.setattr(sys, 'argv', [tool, *args])
    runpy.run_path(tool, run_name='__main__')


def test_converter_tool_writes_the_datasets_annotations(tmp_path,
                                                        monkeypatch):
    data_yaml = write_yolo(str(tmp_path / 'yolo'), {
        'train': {'a': '0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.2 0.4\n',
                  'b': None},
        'val': TWO_VAL})
    out_dir = tmp_path / 'out'
    run_converter(monkeypatch, data_yaml, '--out-dir', str(out_dir))
    assert sorted(os.listdir(out_dir)) == ['train.json', 'val.json']
    for split in ('train', 'val'):
        dataset = build_dataset(tmp_path / 'yolo', split=split)
        with open(out_dir / f'{split}.json') as f:
            converted = json.load(f)
        with open(dataset.ann_file) as f:
            cached = json.load(f)
        for key in ('images', 'annotations', 'categories'):
            assert converted[key] == cached[key], key
        assert converted['categories'] == [dict(id=1, name='cat'),
                                           dict(id=2, name='dog')]
        # The dataset's instances are the json's boxes (xywh -> xyxy).
        expected = sorted(
            (a['category_id'] - 1,
             [round(v, 4) for v in (a['bbox'][0], a['bbox'][1],
                                    a['bbox'][0] + a['bbox'][2],
                                    a['bbox'][1] + a['bbox'][3])])
            for a in converted['annotations'])
        assert sorted(b for boxes in boxes_of(dataset).values()
                      for b in boxes) == expected
    bad = tmp_path / 'bad.yaml'
    bad.write_text('train: x\nval: y\n')
    with pytest.raises(SystemExit) as err:
        run_converter(monkeypatch, str(bad), '--out-dir', str(out_dir))
    assert str(err.value) == f'error: {bad}: no "names" (the class ' \
        'names, a list or a dict {0: name, ...})'


def test_custom_template_resolves_data_root_and_classes(tmp_path):
    """--cfg-options data_root=... reaches every dataset and evaluator at
    run time; class names and num_classes come from the data, for each
    data_format."""
    yolo_root = str(tmp_path / 'yolo') + '/'
    write_yolo(yolo_root, {'train': {'a': '0 0.5 0.5 0.2 0.2\n'},
                           'val': TWO_VAL}, names=('cat', 'dog', 'owl'))
    cfg = load_config('rtdetr_r18vd_custom.py', data_root=yolo_root)
    assert cfg.train_dataloader.dataset.data_root == 'data/custom/'
    resolved = resolve_custom_data(cfg)
    assert resolved.model.bbox_head.num_classes == 3
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = resolved[loader].dataset
        assert dataset.type == 'YOLODataset'
        assert dataset.data_root == yolo_root
        assert dataset.metainfo.classes == ('cat', 'dog', 'owl')
    assert resolved.val_dataloader.dataset.split == 'val'
    assert resolved.test_evaluator.ann_file == \
        yolo_root + 'coco_from_yolo/val.json'
    assert DATASETS.build(dict(resolved.train_dataloader.dataset,
                               pipeline=[])).metainfo['classes'] == (
                                   'cat', 'dog', 'owl')

    coco_root = tmp_path / 'coco'
    (coco_root / 'annotations').mkdir(parents=True)
    (coco_root / 'annotations' / 'train.json').write_text(json.dumps(dict(
        images=[], annotations=[], categories=[
            dict(id=2, name='b'), dict(id=1, name='a')])))
    resolved = resolve_custom_data(load_config(
        'rtdetr_r18vd_custom.py', data_root=str(coco_root) + '/',
        data_format='coco'))
    assert resolved.model.bbox_head.num_classes == 2
    dataset = resolved.val_dataloader.dataset
    assert (dataset.type, dataset.ann_file, dataset.data_prefix.img,
            dataset.metainfo.classes) == (
                'CheckedCocoDataset', 'annotations/val.json', 'images/',
                ('a', 'b'))

    resolved = resolve_custom_data(load_config(
        'rtdetrv2_r18vd_custom.py',
        data_root=osp.join(REPO_ROOT, 'data', 'raccoon'), data_format='voc'))
    assert resolved.model.bbox_head.num_classes == 1
    assert resolved.train_dataloader.dataset.type == 'VOCAsCocoDataset'
    assert resolved.train_dataloader.dataset.metainfo.classes == (
        'raccoon', )

    with pytest.raises(ValueError, match=r"data_format='csv' is not one of "
                       r"\['coco', 'voc', 'yolo'\]"):
        resolve_custom_data(load_config('rtdetr_r18vd_custom.py',
                                        data_format='csv'))
    missing = tmp_path / 'nothing'
    with pytest.raises(FileNotFoundError,
                       match=f'YOLO data.yaml not found: {missing}'):
        resolve_custom_data(load_config('rtdetr_r18vd_custom.py',
                                        data_root=str(missing) + '/'))


def test_v2_custom_template_is_v1_with_v2_attention():
    v1 = load_config('rtdetr_r18vd_custom.py')
    v2 = load_config('rtdetrv2_r18vd_custom.py')
    v2_fragment = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', '_base_', 'models', 'rtdetrv2.py'))
    expected = copy.deepcopy(v1.model)
    expected.merge(v2_fragment.rtdetrv2_model)
    assert v2.model.to_dict() == expected.to_dict()
    assert v2.model.decoder.layer_cfg.cross_attn_cfg.type == \
        'MultiScaleDeformableAttentionV2'
    for key in ('data_root', 'data_format', 'runner_type', 'train_cfg',
                'train_dataloader', 'val_evaluator'):
        assert v2[key] == v1[key], key
    assert v1.load_from.endswith('rtdetr_r18vd_dec3_6x_coco_from_paddle.pth')
    assert v2.load_from.endswith('rtdetrv2_r18vd_120e_coco_rerun_48.1.pth')
    assert osp.isfile(config_path('rtdetrv2_r18vd_custom'))


def test_lazy_dataset_reads_data_yaml_when_it_loads(tmp_path):
    """mmdet's init_detector builds the test dataset lazily for its
    palette: a template whose data_root does not exist yet still builds a
    model; loading the data then names the missing data.yaml."""
    dataset = build_dataset(tmp_path, lazy_init=True)
    with pytest.raises(FileNotFoundError, match='YOLO data.yaml not found: '
                       f'{tmp_path}/data.yaml'):
        dataset.full_init()
    write_yolo(str(tmp_path), {'train': {'a': '0 0.5 0.5 0.2 0.2\n'},
                               'val': TWO_VAL}, names=('x', ))
    dataset.full_init()
    assert dataset.metainfo['classes'] == ('x', )
    assert len(dataset) == 1


def doc_snippets():
    """The config snippets of docs/custom_data.md that inherit the
    template, keyed by their first option."""
    with open(osp.join(REPO_ROOT, 'docs', 'custom_data.md')) as f:
        blocks = re.findall(r'```python\n(.*?)```', f.read(), re.S)
    return [b for b in blocks
            if b.startswith("_base_ = './rtdetr_r18vd_custom.py'")]


def load_snippet(snippet, tmp_path, **options):
    path = tmp_path / f'snippet_{uuid.uuid4().hex}.py'
    path.write_text(snippet.replace("'./rtdetr_r18vd_custom.py'",
                                    repr(config_path('rtdetr_r18vd_custom'))))
    return load_config(str(path), **options)


def test_documented_snippets_load_and_do_what_the_guide_says(tmp_path):
    snippets = doc_snippets()
    assert len(snippets) == 3
    by_key = {}
    for snippet in snippets:
        for key in ('EarlyStoppingHook', 'TensorboardVisBackend',
                    "split='test'"):
            if key in snippet:
                by_key[key] = snippet
    assert len(by_key) == 3

    cfg = load_snippet(by_key['EarlyStoppingHook'], tmp_path)
    assert [h.type for h in cfg.custom_hooks] == ['EMAHook',
                                                  'EarlyStoppingHook']
    hook = HOOKS.build(cfg.custom_hooks[1])
    assert (hook.monitor, hook.rule, hook.patience, hook.min_delta) == (
        'coco/bbox_mAP', 'greater', 10, 0.001)

    cfg = load_snippet(by_key['TensorboardVisBackend'], tmp_path)
    assert [b.type for b in cfg.visualizer.vis_backends] == [
        'LocalVisBackend', 'TensorboardVisBackend']
    assert cfg.visualizer.type == 'DetLocalVisualizer'

    root = str(tmp_path / 'yolo') + '/'
    write_yolo(root, {'train': {'a': ''}, 'val': TWO_VAL, 'test': {'t': ''}},
               data_yaml='train: images/train\nval: images/val\n'
               'test: images/test\nnames: [cat, dog]\n')
    resolved = resolve_custom_data(load_snippet(
        by_key["split='test'"], tmp_path, data_root=root))
    assert resolved.test_dataloader.dataset.split == 'test'
    assert resolved.val_dataloader.dataset.split == 'val'
    assert resolved.test_evaluator.ann_file == \
        root + 'coco_from_yolo/test.json'
    dataset = DATASETS.build(dict(resolved.test_dataloader.dataset,
                                  pipeline=[]))
    assert [osp.basename(d['img_path']) for d in data_infos(dataset)] == [
        't.jpg']
