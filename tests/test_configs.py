"""Every config builds; every top-level detector config trains and predicts.

Detector tests use two images of different, non-square sizes, a batch with
no ground truth at all, and check that the backward pass gives finite
gradients. The decoder is shrunk (30 queries, 10 denoising queries) to keep
this fast on a CPU; everything else is the config's own model.

Model fragments (``configs/_base_/models``) and settings are not configs of
their own; each raccoon config is its COCO sibling's model in the raccoon
setting (``configs/_base_/raccoon_setting.py``) and nothing else.
"""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from .utils import (CONFIG_DIR, build_detector_from_config, load_config,
                    run_loss_and_predict)

ALL_CONFIGS = sorted(
    osp.relpath(p, CONFIG_DIR)
    for p in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if '_base_' not in p)
TOP_LEVEL = [c for c in ALL_CONFIGS if '/' not in c]
RACCOON = [c for c in TOP_LEVEL if c.endswith('_raccoon.py')]
RACCOON_SETTING = osp.join(CONFIG_DIR, '_base_', 'raccoon_setting.py')


def test_configs_found():
    assert 'rtdetr_r18vd_coco.py' in TOP_LEVEL
    assert 'rtdetr_r18vd_raccoon.py' in TOP_LEVEL
    assert len(RACCOON) >= 6


def coco_sibling(name):
    """``rtdetr_X_raccoon.py`` -> ``rtdetr_X.py`` or ``rtdetr_X_coco.py``."""
    stem = name[:-len('_raccoon.py')]
    siblings = [c for c in (stem + '.py', stem + '_coco.py') if c in TOP_LEVEL]
    assert len(siblings) == 1, name
    return siblings[0]


@pytest.mark.parametrize('name', RACCOON)
def test_raccoon_config_is_coco_model_in_raccoon_setting(name):
    """No drift: the raccoon model is the COCO sibling's model (backbone,
    neck, decoder) with only the raccoon setting's changes merged in, and
    everything else (data, schedule, hooks) is the raccoon setting's."""
    raccoon = load_config(name)
    coco = load_config(coco_sibling(name))
    setting = Config.fromfile(RACCOON_SETTING)
    expected = copy.deepcopy(coco.model)
    expected.merge(setting.raccoon_model)
    expected, actual = expected.to_dict(), raccoon.model.to_dict()
    assert actual == expected
    # Pretrained weights are the COCO setting's; raccoon trains offline.
    assert raccoon.model.backbone.init_cfg is None
    assert raccoon.model.neck.eval_spatial_size == (320, 320)
    assert raccoon.model.bbox_head.num_classes == 1
    assert raccoon.model.decoder.num_layers == 3
    for key, value in setting.items():
        assert raccoon[key] == value, key
    # The remaining keys (model, custom_imports, ...) are the fragment's.
    assert set(raccoon) - set(setting) <= set(coco)


@pytest.mark.parametrize('name', ALL_CONFIGS)
def test_config_parses(name):
    cfg = load_config(osp.join(CONFIG_DIR, name))
    assert cfg.model.type == 'RTDETR'
    assert cfg.custom_imports.imports == ['rtdetr_zoo']
    assert 'train_dataloader' in cfg and 'test_evaluator' in cfg


@pytest.mark.parametrize('name', TOP_LEVEL)
def test_detector_loss_and_predict(name):
    torch.manual_seed(0)
    model = build_detector_from_config(osp.join(CONFIG_DIR, name))
    losses, results = run_loss_and_predict(
        model, sizes=((96, 128), (112, 80)), num_gts=(3, 1))
    for key, value in losses.items():
        assert torch.isfinite(value).all(), key
    assert {'loss_cls', 'loss_bbox', 'loss_iou', 'enc_loss_cls',
            'dn_loss_cls', 'dn_loss_bbox'} <= set(losses)
    grads = [p.grad for p in model.parameters()
             if p.requires_grad and p.grad is not None]
    assert len(grads) > 0
    assert all(torch.isfinite(g).all() for g in grads)
    # The decoder and heads learn from the batch.
    assert model.bbox_head.cls_branches[0].weight.grad.abs().sum() > 0
    for result, (h, w) in zip(results, ((96, 128), (112, 80))):
        pred = result.pred_instances
        assert pred.bboxes.shape == (30, 4)
        assert (pred.scores >= 0).all() and (pred.scores <= 1).all()
        assert (pred.bboxes[:, 0::2] <= w + 1e-3).all()
        assert (pred.bboxes[:, 1::2] <= h + 1e-3).all()

    # A batch without any ground truth trains without error or NaN, and the
    # denoising embedding stays in the graph (same graph on every DDP rank).
    model.zero_grad()
    losses, _ = run_loss_and_predict(
        model, sizes=((96, 128), (112, 80)), num_gts=(0, 0))
    for key, value in losses.items():
        assert torch.isfinite(value).all(), key
    assert losses['loss_bbox'].item() == 0
    assert model.dn_query_generator.label_embedding.weight.grad is not None
