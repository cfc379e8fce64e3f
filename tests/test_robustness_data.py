"""Messy data and numerics, unit level (docs/robustness.md): bad image files,
bad boxes, category mismatches, num_classes checks, the VOC converter on
non-JPEG and broken images, and the non-finite loss guard."""
import json
import os
import os.path as osp
import shutil
import types

import cv2
import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from torch import nn

import rtdetr_zoo  # noqa: F401
from mmdet.registry import DATASETS, OPTIM_WRAPPERS
from rtdetr_zoo.datasets import (BadImageError, SafeLoadImageFromFile,
                                 convert_voc_to_coco)
from rtdetr_zoo.engine import DatasetCheckHook, NonFiniteLossHook

from .utils import REPO_ROOT

RACCOON_IMG = osp.join(REPO_ROOT, 'data', 'raccoon', 'images')
RACCOON_1 = osp.join(RACCOON_IMG, 'raccoon-1.jpg')  # 650 x 417


@pytest.fixture
def log_file(tmp_path):
    """A fresh current MMLogger writing to a file; returns a reader."""
    path = tmp_path / 'log.txt'
    MMLogger.get_instance(f'robust_{tmp_path.name}', log_file=str(path),
                          log_level='INFO')

    def read():
        for handler in MMLogger.get_current_instance().handlers:
            handler.flush()
        return path.read_text()

    return read


# ----------------------------------------------------------------- images
def _results(path, width=650, height=417):
    return dict(img_path=str(path), img_id=7, width=width, height=height)


def test_good_jpeg_and_png_load(tmp_path):
    load = SafeLoadImageFromFile()
    out = load(_results(RACCOON_1))
    assert out['img'].shape == (417, 650, 3) and out['ori_shape'] == (417, 650)
    png = tmp_path / 'a.png'
    cv2.imwrite(str(png), cv2.imread(RACCOON_1))
    assert load(_results(png))['img'].shape == (417, 650, 3)


def test_bad_files_raise_naming_the_file(tmp_path):
    load = SafeLoadImageFromFile()
    data = open(RACCOON_1, 'rb').read()
    cases = {
        'missing.jpg': (None, FileNotFoundError, 'image file not found'),
        'empty.jpg': (b'', BadImageError, 'image file is empty'),
        'cut.jpg': (data[:len(data) // 2], BadImageError, 'truncated'),
        'noise.jpg': (os.urandom(5000), BadImageError, 'cannot be decoded'),
    }
    for name, (content, error, reason) in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(error) as info:
            load(_results(tmp_path / name))
        assert str(tmp_path / name) in str(info.value)
        assert '(img_id 7)' in str(info.value) and reason in str(info.value)
    png = tmp_path / 'cut.png'
    cv2.imwrite(str(png), cv2.imread(RACCOON_1))
    png.write_bytes(png.read_bytes()[:3000])
    with pytest.raises(BadImageError, match='cut.png.*cannot be decoded'):
        load(_results(png))


def test_wrong_size_in_annotation(tmp_path):
    load = SafeLoadImageFromFile()
    with pytest.raises(BadImageError,
                       match=r'raccoon-1.jpg.*650x417.*says 640x480') as info:
        load(_results(RACCOON_1, 640, 480))
    assert 'EXIF' not in str(info.value)
    with pytest.raises(BadImageError, match='swapped: an EXIF orientation'):
        load(_results(RACCOON_1, 417, 650))
    out = SafeLoadImageFromFile(check_size=False)(_results(RACCOON_1, 1, 1))
    assert out['img'].shape[:2] == (417, 650)


def test_skip_logs_and_dataset_loads_another_sample(tmp_path, log_file):
    with pytest.raises(ValueError, match="'raise' or 'skip'"):
        SafeLoadImageFromFile(on_error='ignore')
    os.makedirs(tmp_path / 'images')
    shutil.copy(RACCOON_1, tmp_path / 'images' / 'good.jpg')
    (tmp_path / 'images' / 'bad.jpg').write_bytes(b'not an image')
    ann = dict(
        images=[dict(id=1, file_name='bad.jpg', width=650, height=417),
                dict(id=2, file_name='good.jpg', width=650, height=417)],
        annotations=[dict(id=i, image_id=i, category_id=1, area=100.0,
                          bbox=[10, 10, 10, 10], iscrowd=0) for i in (1, 2)],
        categories=[dict(id=1, name='raccoon')])
    json.dump(ann, open(tmp_path / 'a.json', 'w'))
    init_default_scope('mmdet')
    dataset = DATASETS.build(dict(
        type='CheckedCocoDataset', data_root=str(tmp_path),
        ann_file='a.json', data_prefix=dict(img='images/'),
        metainfo=dict(classes=('raccoon', )),
        pipeline=[dict(type='SafeLoadImageFromFile', on_error='skip')]))
    assert dataset[0]['img_path'].endswith('good.jpg')
    assert 'skipping training sample' in log_file()
    assert 'bad.jpg (img_id 1): cannot be decoded' in log_file()


# ------------------------------------------------------------ annotations
def _coco(tmp_path, categories, annotations, images=None, classes=None,
          **kwargs):
    images = images or [dict(id=i, file_name=f'{i}.jpg', width=100,
                             height=80) for i in (1, 2, 3)]
    json.dump(dict(images=images, annotations=annotations,
                   categories=categories), open(tmp_path / 'a.json', 'w'))
    init_default_scope('mmdet')
    cfg = dict(type='CheckedCocoDataset', ann_file=str(tmp_path / 'a.json'),
               data_prefix=dict(img=''), pipeline=[], **kwargs)
    cfg.setdefault('filter_cfg', dict(filter_empty_gt=False))
    if classes is not None:
        cfg['metainfo'] = dict(classes=classes)
    return DATASETS.build(cfg)


def _ann(id, image_id, bbox, category_id=3, **kwargs):
    return dict(id=id, image_id=image_id, category_id=category_id, bbox=bbox,
                area=abs(bbox[2] * bbox[3]) if len(bbox) == 4 else 0,
                iscrowd=0, **kwargs)


CATS = [dict(id=3, name='cat'), dict(id=7, name='dog'),
        dict(id=9, name='fox')]


def test_bad_boxes_are_clipped_or_dropped_and_counted(tmp_path, log_file):
    anns = [
        _ann(1, 1, [10, 10, 20, 20]),                   # kept as is
        _ann(2, 1, [-5, 70, 30, 20], category_id=9),    # clipped to image
        _ann(3, 1, [10, 10, 0, 20]),                    # zero width
        _ann(4, 1, [10, 10, 20, -4]),                   # negative height
        _ann(5, 1, [150, 10, 20, 20]),                  # outside
        _ann(6, 1, [10, 10, float('nan'), 5]),          # not finite
        _ann(7, 1, [99.5, 10, 20, 20]),                 # 0.5 px once clipped
        _ann(8, 2, [0, 0, 0, 0]),                       # only box: zero area
        _ann(9, 3, [1, 1, 5, 5], category_id=7),
        dict(_ann(10, 3, [1, 1, 5, 5]), area=0),        # area recomputed
    ]
    ds = _coco(tmp_path, CATS, anns, classes=('cat', 'dog', 'fox'))
    inst = {d['img_id']: d['instances'] for d in ds}
    assert [i['bbox'] for i in inst[1]] == [[10, 10, 30, 30], [0, 70, 25, 80]]
    assert [i['bbox_label'] for i in inst[1]] == [0, 2]
    assert inst[2] == []
    assert [i['bbox_label'] for i in inst[3]] == [1, 0]
    report = ds.box_report
    assert report['clipped to the image'] == [2]
    assert report['dropped: zero-area or negative width/height'] == [3, 4, 8]
    assert report['dropped: entirely outside the image'] == [5]
    assert report['dropped: bbox is not 4 finite numbers'] == [6]
    assert report['dropped: smaller than min_box_size after clipping'] == [7]
    assert report['background_images'] == [2]
    log = log_file()
    assert 'a.json: 1 boxes clipped to the image (annotation ids 2)' in log
    assert '3 boxes dropped: zero-area or negative width/height (annotation' \
        ' ids 3, 4, 8)' in log
    assert '1 images have no valid box left and train as background' in log
    # ids 3, 7, 9 (gaps, not starting at 1) map to labels 0..2
    assert ds.cat_ids == [3, 7, 9] and 'category ids [3, 7, 9]' in log


def test_class_without_boxes_loads_for_training(tmp_path):
    """A class none of whose boxes is in the json (a COCO subset) is
    valid: mmdet's filter reads every class's images, which used to raise
    a bare KeyError."""
    anns = [_ann(1, 1, [1, 1, 5, 5]), _ann(2, 2, [1, 1, 5, 5])]
    for filter_empty_gt in (False, True):
        ds = _coco(tmp_path, CATS, anns, classes=('cat', 'dog', 'fox'),
                   filter_cfg=dict(filter_empty_gt=filter_empty_gt))
        assert ds.cat_img_map == {3: [1, 2], 7: [], 9: []}
        assert [d['img_id'] for d in ds] == \
            ([1, 2] if filter_empty_gt else [1, 2, 3])


def test_category_mismatches_fail_at_start(tmp_path, log_file):
    anns = [_ann(1, 1, [1, 1, 5, 5]), _ann(2, 1, [1, 1, 5, 5], category_id=9)]
    with pytest.raises(ValueError, match=r"classes \['wolf'\] are not "
                       r"category names.*classes=\('cat', 'dog', 'fox'\)"):
        _coco(tmp_path, CATS, anns, classes=('cat', 'wolf'))
    with pytest.raises(ValueError, match='no metainfo, so the 80 COCO'):
        _coco(tmp_path, CATS, anns)
    with pytest.raises(ValueError, match=r"another order.*classes=\('cat', "
                       r"'fox'\)"):
        _coco(tmp_path, CATS, anns, classes=('fox', 'cat'))
    with pytest.raises(ValueError, match=r"names \['cat'\] appear more"):
        _coco(tmp_path, CATS + [dict(id=11, name='cat')], anns,
              classes=('cat', ))
    with pytest.raises(ValueError, match=r'image id 2 \(2.jpg\) has width=0'):
        _coco(tmp_path, CATS, anns, classes=('cat', ),
              images=[dict(id=1, file_name='1.jpg', width=9, height=9),
                      dict(id=2, file_name='2.jpg', width=0, height=9)])
    ds = _coco(tmp_path, CATS, anns, classes=('cat', ))
    assert [len(d['instances']) for d in ds] == [1, 0, 0]
    assert "'fox' (id 9, 1 boxes)" in log_file()
    assert 'are not in metainfo classes and their boxes are ignored' in \
        log_file()


def _fake_runner(num_classes, train_classes, val_classes=None):
    def loader(classes):
        return types.SimpleNamespace(dataset=types.SimpleNamespace(
            metainfo=dict(classes=classes)))

    runner = types.SimpleNamespace(
        model=types.SimpleNamespace(bbox_head=types.SimpleNamespace(
            num_classes=num_classes)),
        train_dataloader=loader(train_classes), _val_loop=None)
    if val_classes is not None:
        from mmengine.runner import ValLoop
        runner._val_loop = ValLoop.__new__(ValLoop)
        runner._val_loop.dataloader = loader(val_classes)
        runner.val_loop = runner._val_loop
    return runner


def test_num_classes_checked_before_train():
    hook = DatasetCheckHook()
    hook.before_train(_fake_runner(1, ('raccoon', ), ('raccoon', )))
    with pytest.raises(ValueError, match=r'num_classes=80 but the '
                       r"train_dataloader dataset.*set "
                       r'model.bbox_head.num_classes=1'):
        hook.before_train(_fake_runner(80, ('raccoon', )))
    with pytest.raises(ValueError, match='give both the same'):
        hook.before_train(_fake_runner(1, ('raccoon', ), ('dog', )))


# ---------------------------------------------------------- VOC converter
def _voc(root, name, img_name, size='<size><width>650</width><height>417'
         '</height></size>', cls='raccoon'):
    os.makedirs(root / 'annotations', exist_ok=True)
    os.makedirs(root / 'images', exist_ok=True)
    (root / 'annotations' / f'{name}.xml').write_text(
        f'<annotation><filename>{img_name}</filename>{size}<object><name>'
        f'{cls}</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax>'
        '<ymax>40</ymax></bndbox></object></annotation>')


def test_voc_png_and_missing_extension(tmp_path):
    img = cv2.imread(RACCOON_1)
    cv2.imwrite(str(tmp_path / 'a.png'), img)  # the XML says a.jpg
    _voc(tmp_path, 'a', 'a.jpg')
    cv2.imwrite(str(tmp_path / 'images' / 'b.bmp'), img)
    _voc(tmp_path, 'b', 'b')  # no extension
    shutil.move(tmp_path / 'a.png', tmp_path / 'images' / 'a.png')
    paths = convert_voc_to_coco(str(tmp_path), str(tmp_path / 'out'),
                                val_ratio=0.0)
    images = json.load(open(paths['train']))['images']
    assert [im['file_name'] for im in images] == ['a.png', 'b.bmp']


def test_voc_bad_images_reported_or_skipped(tmp_path, log_file):
    data = open(RACCOON_1, 'rb').read()
    for name in ('good', 'wrongsize', 'cut', 'junk'):
        _voc(tmp_path, name, f'{name}.jpg',
             size='<size><width>640</width><height>480</height></size>'
             if name == 'wrongsize' else
             '<size><width>650</width><height>417</height></size>')
    for name, content in (('good', data), ('wrongsize', data),
                          ('cut', data[:len(data) // 2]),
                          ('junk', b'\x00' * 100)):
        (tmp_path / 'images' / f'{name}.jpg').write_bytes(content)
    _voc(tmp_path, 'zero', 'zero.jpg',
         size='<size><width>0</width><height>0</height></size>')
    shutil.copy(RACCOON_1, tmp_path / 'images' / 'zero.jpg')
    with pytest.raises(ValueError) as info:
        convert_voc_to_coco(str(tmp_path), str(tmp_path / 'out'))
    msg = str(info.value)
    assert msg.startswith('3 bad images')
    assert 'cut.xml' in msg and 'cut.jpg: JPEG file is truncated' in msg
    assert 'junk.jpg: not a readable image' in msg
    assert 'wrongsize.jpg: <size> says 640x480 but the image is 650x417' in msg
    assert 'skip_bad_images=True' in msg
    paths = convert_voc_to_coco(str(tmp_path), str(tmp_path / 'out'),
                                val_ratio=0.0, skip_bad_images=True)
    images = json.load(open(paths['train']))['images']
    assert [(im['file_name'], im['width']) for im in images] == [
        ('good.jpg', 650), ('zero.jpg', 650)]
    assert 'leaving out 3 bad images' in log_file()


def test_voc_unknown_class_names_the_files(tmp_path):
    _voc(tmp_path, 'a', 'a.jpg')
    _voc(tmp_path, 'b', 'b.jpg', cls='dog')
    for name in 'ab':
        shutil.copy(RACCOON_1, tmp_path / 'images' / f'{name}.jpg')
    with pytest.raises(ValueError, match=r"\['dog'\] are not in classes=\["
                       r"'raccoon'\] \(in b.xml\)"):
        convert_voc_to_coco(str(tmp_path), str(tmp_path / 'out'),
                            classes=['raccoon'])


# ------------------------------------------------------ non-finite losses
class _Toy(nn.Module):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.fc(x))


def _wrapper(model, **kwargs):
    init_default_scope('mmdet')
    return OPTIM_WRAPPERS.build(dict(
        type='NonFiniteGuardOptimWrapper',
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1), **kwargs))


def _train_step(model, wrapper, scale=1.0):
    with wrapper.optim_context(model):
        loss = model(torch.randn(8, 4)).pow(2).mean() * scale
    wrapper.update_params(loss)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_guard_skips_nan_loss_and_restores_buffers(log_file):
    torch.manual_seed(0)
    model = _Toy()
    wrapper = _wrapper(model)
    _train_step(model, wrapper)
    assert wrapper.num_skipped == 0
    before = _state(model)
    _train_step(model, wrapper, scale=float('nan'))
    assert wrapper.num_skipped == 1 and wrapper.last_step_skipped
    for k, v in _state(model).items():
        torch.testing.assert_close(v, before[k], msg=k)
    assert 'non-finite loss (nan); the optimizer step is skipped (1 skipped' \
        in log_file()
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    _train_step(model, wrapper)
    assert not wrapper.last_step_skipped
    assert not torch.equal(model.fc.weight, before['fc.weight'])


def test_guard_skips_inf_gradients_with_finite_loss(log_file):
    model = _Toy()
    wrapper = _wrapper(model)
    model.fc.weight.register_hook(lambda g: g * float('inf'))
    before = _state(model)
    _train_step(model, wrapper)
    assert wrapper.num_skipped == 1
    torch.testing.assert_close(model.fc.weight, before['fc.weight'])
    assert 'non-finite gradients in 1 parameter tensors' in log_file()


def test_guard_stop_and_divergence():
    model = _Toy()
    with pytest.raises(FloatingPointError, match="on_non_finite='stop'"):
        _train_step(model, _wrapper(model, on_non_finite='stop'),
                    scale=float('inf'))
    wrapper = _wrapper(model, max_consecutive_skips=2)
    _train_step(model, wrapper, scale=float('nan'))
    with pytest.raises(FloatingPointError, match='2 steps in a row'):
        _train_step(model, wrapper, scale=float('nan'))
    with pytest.raises(ValueError, match='on_non_finite'):
        _wrapper(model, on_non_finite='ignore')


def test_loss_hook_names_terms_and_iteration(log_file):
    runner = types.SimpleNamespace(
        iter=11,
        optim_wrapper=types.SimpleNamespace(last_step_skipped=True))
    hook = NonFiniteLossHook()
    hook.after_train_iter(runner, 0, outputs=dict(
        loss=torch.tensor(float('nan')), loss_cls=torch.tensor(0.5),
        d1=torch.tensor(float('inf'))))
    assert 'Iter 12: non-finite loss terms loss=nan, d1=inf; the optimizer ' \
        'step was skipped' in log_file()
    runner.optim_wrapper = object()
    hook.after_train_iter(runner, 0, outputs=dict(loss=float('nan')))
    assert 'the parameters were updated with them' in log_file()
