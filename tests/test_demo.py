"""rtdetr_zoo.apis.draw_predictions and its command line demo/image_demo.py:
draw the predictions on an image and on a folder."""
import os.path as osp
import shutil
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch

from rtdetr_zoo.apis import draw_predictions, load_detector

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
IMAGE = osp.join(REPO_ROOT, 'data', 'raccoon', 'images', 'raccoon-1.jpg')
CONFIG = osp.join(REPO_ROOT, 'configs', 'rtdetr_r18vd_raccoon.py')
TINY = dict(model=dict(num_queries=20, decoder=dict(num_layers=1),
                       test_cfg=dict(max_per_img=20)))
OPTIONS = ['model.num_queries=20', 'model.decoder.num_layers=1',
           'model.test_cfg.max_per_img=20']


def run_demo_cli(*args):
    return subprocess.run([sys.executable, 'demo/image_demo.py', *args],
                          cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)


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


def test_demo_draws_boxes_on_a_folder(checkpoint, tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    image = mmcv.imread(IMAGE)
    mmcv.imwrite(image, str(folder / 'a.png'))  # lossless: exact comparison
    shutil.copy(IMAGE, folder / 'b.jpg')
    (folder / 'notes.txt').write_text('not an image')
    out_dir = tmp_path / 'out'
    done = run_demo_cli(str(folder), CONFIG, checkpoint, '--out-dir',
                        str(out_dir), '--cfg-options', *OPTIONS,
                        '--score-thr', '0.0')
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out_dir.iterdir()) == ['a.png', 'b.jpg']
    assert 'wrote 2 image(s) with 40 detection(s)' in done.stdout

    outputs = draw_predictions(str(folder / 'a.png'), CONFIG, checkpoint,
                               str(out_dir), score_thr=0.0, cfg_options=TINY)
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
    draw_predictions(str(folder / 'a.png'), CONFIG, checkpoint, str(out_dir),
                     score_thr=1.0, cfg_options=TINY)
    np.testing.assert_array_equal(mmcv.imread(str(out_dir / 'a.png')), image)


def test_demo_bf16(checkpoint, tmp_path):
    done = run_demo_cli(IMAGE, CONFIG, checkpoint, '--out-dir',
                        str(tmp_path), '--cfg-options', *OPTIONS,
                        '--score-thr', '0.0', '--bf16')
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'wrote 1 image(s) with 20 detection(s)' in done.stdout
    outputs = draw_predictions(IMAGE, CONFIG, checkpoint, str(tmp_path),
                               score_thr=0.0, cfg_options=TINY, bf16=True)
    assert outputs[0][1].pred_instances.bboxes.dtype == torch.float32


@pytest.mark.parametrize('which, message', [
    ('inputs', 'input image or folder not found'),
    ('config', 'config file not found'),
    ('checkpoint', 'checkpoint file not found'),
])
def test_demo_missing_inputs(which, message, checkpoint, tmp_path):
    args = dict(inputs=IMAGE, config=CONFIG, checkpoint=checkpoint)
    args[which] = str(tmp_path / 'missing')
    done = run_demo_cli(args['inputs'], args['config'], args['checkpoint'],
                        '--out-dir', str(tmp_path / 'out'))
    assert done.returncode == 2
    assert message in done.stderr
    # The package function names the same file.
    with pytest.raises(FileNotFoundError, match=message):
        draw_predictions(args['inputs'], args['config'], args['checkpoint'],
                         str(tmp_path / 'out'), cfg_options=TINY)


def test_demo_empty_folder(checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match='no images'):
        draw_predictions(str(tmp_path), CONFIG, checkpoint,
                         str(tmp_path / 'out'), cfg_options=TINY)
