"""Every trainable parameter of every top-level config learns.

A dead branch (a module whose output never reaches the loss), a parameter
frozen by mistake or a zero learning-rate multiplier would pass the shape
and loss tests; here two optimizer steps of each config's own optimizer
(its learning rates, multipliers and gradient clipping) on a real raccoon
batch must change every parameter tensor that requires a gradient (two,
because the box heads' last layers start at zero, so the layers before them
get their first gradient in the second step). Stochastic depth is off (it
legitimately skips whole blocks at random). Weight
decay is off, so that decay alone cannot move a parameter, and AdamW's
``eps`` is 1e-16, so that every non-zero gradient moves its parameter by
about the learning rate: with the default 1e-8 a gradient of 1e-11 (a block
behind a 1e-5 layer scale, at the backbone's x0.1 rate) moves a weight of 1
by less than float32 can show.
"""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmdet.registry import DATASETS

from .utils import CONFIG_DIR, build_detector_from_config, load_config

# RT-DETRv2 configs are RT-DETR configs with another decoder
# cross-attention (tests/test_configs.py): its two sampling methods are
# checked on R18-vd.
CONFIGS = sorted(osp.basename(p)
                 for p in glob.glob(osp.join(CONFIG_DIR, 'rtdetr_*.py'))) + [
                     'rtdetrv2_r18vd_120e_coco.py',
                     'rtdetrv2_r18vd_dsp_3x_coco.py'
                 ]
# Small real images keep the largest backbones quick on a CPU; the
# multi-scale batch resize is off for the same reason.
IMAGE_SIZE = (160, 160)


@pytest.fixture(scope='module')
def raccoon_batch():
    """Two raccoon validation images with their boxes, collated."""
    cfg = load_config('rtdetr_r18vd_raccoon')
    dataset_cfg = copy.deepcopy(cfg.val_dataloader.dataset)
    for transform in dataset_cfg.pipeline:
        if transform.type == 'Resize':
            transform.scale = IMAGE_SIZE
    init_default_scope('mmdet')
    dataset = DATASETS.build(dataset_cfg)
    batch = pseudo_collate([dataset[0], dataset[1]])
    assert all(len(s.gt_instances) for s in batch['data_samples'])
    return batch


@pytest.mark.parametrize('name', CONFIGS)
def test_every_trainable_parameter_changes(name, raccoon_batch):
    torch.manual_seed(0)
    model = build_detector_from_config(
        name, **{'model.data_preprocessor.batch_augments': None})
    cfg = load_config(name, **{'optim_wrapper.optimizer.weight_decay': 0.0,
                               'optim_wrapper.optimizer.eps': 1e-16})
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()
    for module in model.modules():
        if type(module).__name__ == 'DropPath':
            module.eval()
    before = {n: p.detach().clone() for n, p in model.named_parameters()
              if p.requires_grad}
    assert before
    for _ in range(2):
        losses = model.train_step(copy.deepcopy(raccoon_batch),
                                  optim_wrapper)
        assert torch.isfinite(losses['loss'])
    params = dict(model.named_parameters())
    unchanged = [n for n, value in before.items()
                 if torch.equal(value, params[n].detach())]
    assert not unchanged, (
        f'{name}: {len(unchanged)} of {len(before)} trainable parameter '
        f'tensors did not change: {unchanged[:10]}')
