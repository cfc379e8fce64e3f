"""``python tools/train.py configs/deim_dfine_hgnetv2_s_coco.py`` on a COCO
folder, starting from an official DEIM-D-FINE-S release file through
``load_from`` (the fixture's weights in the official layout, every key name
and shape as published)."""
import os.path as osp

from .test_training import _coco_layout, _run, coco_folder_options
from .utils import (OFFICIAL_DFINE_FIXTURE, official_release_file,
                    requires_official_dfine_fixture)

pytestmark = requires_official_dfine_fixture


def test_deim_dfine_s_trains_through_tools_train_from_the_release(tmp_path):
    """The official file converts once (for the model and its EMA copy),
    every tensor loads, and DEIM-D-FINE-S trains with its recipe: D-FINE's
    losses (MAL, FGL, DDF, the pre-refinement terms) on every layer, the
    epoch policy moved to [0, 1, 1] of 2 epochs, evaluation with CocoMetric
    and a checkpoint. 4 training images in batches of 2, 30 queries."""
    from rtdetr_zoo.engine import read_checkpoint
    state_dict = read_checkpoint(OFFICIAL_DFINE_FIXTURE)['state_dict']
    release = official_release_file(state_dict,
                                    tmp_path / 'deim_dfine_hgnetv2_s.pth')
    root = str(tmp_path / 'coco')
    _coco_layout(root, num_images=6)
    work_dir = str(tmp_path / 'work')
    options = coco_folder_options(
        root, train_dataset='train_dataloader.dataset.dataset') + [
        f'load_from={release}', 'train_cfg.max_epochs=2',
        'custom_hooks.1.start_epoch=0', 'custom_hooks.1.flat_epoch=1',
        'custom_hooks.1.stop_epoch=1', 'param_scheduler.0.end=2',
        'param_scheduler.0.flat_epoch=1', 'param_scheduler.0.no_aug_epoch=1',
        'param_scheduler.0.warmup_iters=2',
        # Multi-scale at 320-352 px instead of 480-800 (CPU time).
        'model.data_preprocessor.batch_augments.1.random_size_range=(320,352)']
    log = _run(['tools/train.py', 'configs/deim_dfine_hgnetv2_s_coco.py',
                '--work-dir', work_dir, '--cfg-options', *options])
    assert log.count(f'converted {len(state_dict)} official tensors of '
                     f'{release}') == 1, log[-4000:]
    assert 'size mismatch' not in log and 'unexpected key' not in log
    assert 'missing keys in source state_dict' not in log
    last = [line for line in log.splitlines()
            if 'Epoch(train) [2][2/2]' in line]
    assert len(last) == 1
    for term in ('loss_mal', 'loss_fgl', 'd0.loss_ddf', 'd1.loss_ddf',
                 'pre.loss_mal', 'enc_loss_mal', 'dn_loss_fgl',
                 'd0.dn_loss_ddf', 'pre.dn_loss_bbox'):
        assert f' {term}: ' in last[0], term
    policy = '(start_epoch=0, flat_epoch=1, stop_epoch=1): without'
    assert f"epoch 1: augmentation policy 'all' {policy} none" in log
    assert (f"epoch 2: augmentation policy 'stopped' {policy} "
            "['DEIMMosaic', 'PhotoMetricDistortion', 'SkipAfterMosaic', "
            "'BatchRollMixup', 'BatchSyncRandomResize']") in log
    assert log.count('coco/bbox_mAP:') == 2
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
