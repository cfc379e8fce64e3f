"""The custom-data template trains and evaluates on a YOLO-layout data set:
the shipped raccoon data (Pascal VOC) written as Ultralytics writes YOLO
labels, then ``tools/train.py configs/rtdetr_r18vd_custom.py --cfg-options
data_root=...`` with a tiny schedule (all 200 images converted, 160 train
and 40 val; the run reads the first 24 and 8 of them through the datasets'
``indices``, at 160 px, for one epoch with validation at its end)."""
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

from mmengine.config import Config

from rtdetr_zoo.datasets import parse_voc_xml

from .utils import REPO_ROOT

RACCOON = osp.join(REPO_ROOT, 'data', 'raccoon')
# The converted split, and the images the short run reads of it.
NUM_TRAIN, NUM_VAL = 160, 40
RUN_TRAIN, RUN_VAL = 24, 8


def raccoon_as_yolo(root):
    """The 200 raccoon images (``NUM_TRAIN`` then ``NUM_VAL``) in YOLO layout
    (``images/{train,val}``, ``labels/{train,val}``, ``data.yaml``), labels
    as Ultralytics' VOC conversion writes them: ``cls cx cy w h``
    normalised, VOC's 1-based corners shifted by one pixel, 6 decimals."""
    xml_files = sorted(
        (f for f in os.listdir(osp.join(RACCOON, 'annotations'))
         if f.endswith('.xml')),
        key=lambda f: int(re.search(r'\d+', f)[0]))
    assert len(xml_files) == NUM_TRAIN + NUM_VAL
    for index, xml_file in enumerate(xml_files):
        split = 'train' if index < NUM_TRAIN else 'val'
        record = parse_voc_xml(osp.join(RACCOON, 'annotations', xml_file),
                               osp.join(RACCOON, 'images'))
        for sub in ('images', 'labels'):
            os.makedirs(osp.join(root, sub, split), exist_ok=True)
        shutil.copy(osp.join(RACCOON, 'images', record['file_name']),
                    osp.join(root, 'images', split, record['file_name']))
        width, height = record['width'], record['height']
        lines = []
        for _, (x1, y1, x2, y2) in record['objects']:
            box = ((x1 + x2) / 2 - 1) / width, ((y1 + y2) / 2 - 1) / height, \
                (x2 - x1) / width, (y2 - y1) / height
            lines.append('%g %.6f %.6f %.6f %.6f\n' % (0, *box))
        stem = osp.splitext(record['file_name'])[0]
        with open(osp.join(root, 'labels', split, stem + '.txt'), 'w') as f:
            f.writelines(lines)
    with open(osp.join(root, 'data.yaml'), 'w') as f:
        f.write('path: .\ntrain: images/train\nval: images/val\n'
                'names:\n  0: raccoon\n')


def test_custom_template_trains_and_evaluates_on_yolo_data(tmp_path):
    data_root = str(tmp_path / 'raccoon_yolo') + '/'
    raccoon_as_yolo(data_root)
    work_dir = str(tmp_path / 'work')
    loader = ('batch_size=4', 'num_workers=0', 'persistent_workers=False')
    options = [
        f'data_root={data_root}', 'load_from=None',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        f'train_dataloader.dataset.indices={RUN_TRAIN}',
        f'val_dataloader.dataset.indices={RUN_VAL}',
        *(f'train_dataloader.{o}' for o in loader),
        *(f'val_dataloader.{o}' for o in loader),
        'train_dataloader.dataset.pipeline.7.scale=(160,160)',
        'val_dataloader.dataset.pipeline.1.scale=(160,160)',
        'model.data_preprocessor.batch_augments=None',
        'model.neck.eval_spatial_size=(160,160)',
        'model.num_queries=100', 'model.test_cfg.max_per_img=100',
        'model.dn_cfg.group_cfg.num_dn_queries=20',
        'default_hooks.logger.interval=1',
    ]
    env = {k: v for k, v in os.environ.items()
           if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', 'configs/rtdetr_r18vd_custom.py',
         '--work-dir', work_dir, '--cfg-options', *options],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]

    # Classes and num_classes came from data.yaml, the split was converted.
    assert (f"custom data: data_format='yolo', data_root='{data_root}', "
            "1 classes ('raccoon',) (model.bbox_head.num_classes=1)") in out
    assert f'{NUM_TRAIN} images, ' in out and f'{NUM_VAL} images, ' in out
    assert osp.isfile(osp.join(data_root, 'coco_from_yolo', 'val.json'))
    # It trained one epoch and evaluated COCO mAP on the val split.
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    scalars = [osp.join(work_dir, d, 'vis_data', 'scalars.json')
               for d in os.listdir(work_dir)
               if osp.isdir(osp.join(work_dir, d, 'vis_data'))]
    assert len(scalars) == 1
    with open(scalars[0]) as f:
        records = [json.loads(line) for line in f]
    assert sum('loss' in r for r in records) == RUN_TRAIN // 4
    metrics = [r for r in records if 'coco/bbox_mAP' in r]
    assert len(metrics) == 1
    assert 0.0 <= metrics[0]['coco/bbox_mAP'] <= 1.0
    # The work dir keeps the resolved config (what inference should use).
    dumped = Config.fromfile(osp.join(work_dir, 'rtdetr_r18vd_custom.py'))
    assert dumped.model.bbox_head.num_classes == 1
    assert dumped.val_dataloader.dataset.data_root == data_root
    assert dumped.val_evaluator.ann_file == \
        data_root + 'coco_from_yolo/val.json'
