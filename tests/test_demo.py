"""demo/image_demo.py: draws the predictions on an image and on a folder."""
import os.path as osp
import shutil
import sys

import mmcv
import numpy as np
import pytest
import torch

from rtdetr_zoo.deploy import load_detector

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
IMAGE = osp.join(REPO_ROOT, 'data', 'raccoon', 'images', 'raccoon-1.jpg')
CONFIG = osp.join(REPO_ROOT, 'configs', 'rtdetr_r18vd_raccoon.py')
TINY = dict(model=dict(num_queries=20, decoder=dict(num_layers=1),
                       test_cfg=dict(max_per_img=20)))
OPTIONS = ['model.num_queries=20', 'model.decoder.num_layers=1',
           'model.test_cfg.max_per_img=20']
sys.path.insert(0, osp.join(REPO_ROOT, 'demo'))


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A random-weight checkpoint of the small raccoon model, with the
    dataset meta an mmengine training run stores."""
    torch.manual_seed(0)
    model = load_detector(CONFIG, None, TINY)
    path = str(tmp_path_factory.mktemp('ckpt') / 'tiny.pth')
    torch.save(dict(
        meta=dict(dataset_meta=dict(classes=('raccoon', ),
                                    palette=[(220, 20, 60)])),
        state_dict=model.state_dict()), path)
    return path


def test_demo_draws_boxes_on_a_folder(checkpoint, tmp_path, capsys):
    import image_demo
    folder = tmp_path / 'images'
    folder.mkdir()
    image = mmcv.imread(IMAGE)
    mmcv.imwrite(image, str(folder / 'a.png'))  # lossless: exact comparison
    shutil.copy(IMAGE, folder / 'b.jpg')
    (folder / 'notes.txt').write_text('not an image')
    out_dir = tmp_path / 'out'
    argv = [str(folder), CONFIG, checkpoint, '--out-dir', str(out_dir),
            '--cfg-options', *OPTIONS]
    assert image_demo.main([*argv, '--score-thr', '0.0']) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ['a.png', 'b.jpg']
    assert 'wrote 2 image(s) with 40 detection(s)' in capsys.readouterr().out

    outputs = image_demo.run_demo(str(folder / 'a.png'), CONFIG, checkpoint,
                                  str(out_dir), score_thr=0.0,
                                  cfg_options=TINY)
    (out_file, result), = outputs
    drawn = mmcv.imread(out_file)
    assert drawn.shape == image.shape
    changed = np.abs(drawn.astype(int) - image.astype(int)).sum(-1) > 0
    # Every drawn box outline changes the pixels under it (left edge of
    # each box, clipped to the image).
    height, width = image.shape[:2]
    for x1, y1, x2, y2 in result.pred_instances.bboxes.numpy():
        x = min(max(int(round(x1)), 0), width - 1)
        top, bottom = int(max(y1, 0)), int(min(y2, height - 1))
        if bottom - top >= 4:
            assert changed[top:bottom + 1, max(x - 1, 0):x + 2].any()

    # Nothing above the threshold: the picture is written unchanged.
    assert image_demo.main([str(folder / 'a.png'), *argv[1:],
                            '--score-thr', '1.0']) == 0
    np.testing.assert_array_equal(mmcv.imread(str(out_dir / 'a.png')), image)


@pytest.mark.parametrize('which, message', [
    ('inputs', 'input image or folder not found'),
    ('config', 'config file not found'),
    ('checkpoint', 'checkpoint file not found'),
])
def test_demo_missing_inputs(which, message, checkpoint, tmp_path, capsys):
    import image_demo
    args = dict(inputs=IMAGE, config=CONFIG, checkpoint=checkpoint)
    args[which] = str(tmp_path / 'missing')
    with pytest.raises(SystemExit):
        image_demo.main([args['inputs'], args['config'], args['checkpoint'],
                         '--out-dir', str(tmp_path / 'out')])
    assert message in capsys.readouterr().err


def test_demo_empty_folder(checkpoint, tmp_path):
    import image_demo
    with pytest.raises(FileNotFoundError, match='no images'):
        image_demo.run_demo(str(tmp_path), CONFIG, checkpoint,
                            str(tmp_path / 'out'), cfg_options=TINY)
