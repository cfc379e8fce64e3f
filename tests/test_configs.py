"""Every config builds; every top-level detector config trains and predicts.

Detector tests use two images of different, non-square sizes, a batch with
no ground truth at all, and check that the backward pass gives finite
gradients. The decoder is shrunk (30 queries, 10 denoising queries) to keep
this fast on a CPU; everything else is the config's own model.

Model fragments (``configs/_base_/models``) and settings are not configs of
their own; each raccoon config is its COCO sibling's model in the raccoon
setting (``configs/_base_/raccoon_setting.py``) and nothing else. Each
RT-DETRv2 config is an RT-DETR config (or model) with RT-DETRv2's
cross-attention (``configs/_base_/models/rtdetrv2.py``) and the official
schedule, and takes an optimizer step.
"""
import copy
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from rtdetr_zoo.layers import MultiScaleDeformableAttentionV2

from .utils import (CONFIG_DIR, build_detector_from_config, load_config,
                    make_batch, run_loss_and_predict)

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
    """``rtdetr_X_raccoon.py`` -> ``rtdetr_X.py`` or ``rtdetr_X_coco.py``,
    with the schedule in the name for RT-DETRv2
    (``rtdetrv2_r18vd_120e_coco.py``)."""
    stem = re.escape(name[:-len('_raccoon.py')])
    siblings = [c for c in TOP_LEVEL
                if re.fullmatch(stem + r'(_\d+[ex])?(_coco)?\.py', c)]
    assert len(siblings) == 1, name
    return siblings[0]


@pytest.mark.parametrize(
    'name', [c for c in RACCOON if not c.startswith('deim_')])
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
    assert cfg.model.type in ('RTDETR', 'DFINE')
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
    # The classification term: RT-DETR's varifocal loss, DEIM's MAL.
    cls = 'mal' if name.startswith('deim_') else 'cls'
    assert {f'loss_{cls}', 'loss_bbox', 'loss_iou', f'enc_loss_{cls}',
            f'dn_loss_{cls}', 'dn_loss_bbox'} <= set(losses)
    grads = [p.grad for p in model.parameters()
             if p.requires_grad and p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    # The loss reaches every part of the detector, the backbone included
    # (every parameter: tests/test_every_parameter_learns.py).
    for part in ('backbone', 'neck', 'decoder', 'bbox_head'):
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in getattr(model, part).parameters()), part
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


# RT-DETRv2 (the official releases, and the zoo variants' twins): each is an
# RT-DETR model with _base_/models/rtdetrv2.py (or rtdetrv2_dsp.py) merged.
RTDETRV2_TWINS = {
    'rtdetrv2_r18vd_120e_coco.py': 'rtdetr_r18vd_coco.py',
    'rtdetrv2_r34vd_120e_coco.py': 'rtdetr_r34vd_coco.py',
    'rtdetrv2_r50vd_m_7x_coco.py': 'rtdetr_r50vd_coco.py',
    'rtdetrv2_r50vd_6x_coco.py': 'rtdetr_r50vd_coco.py',
    'rtdetrv2_r101vd_6x_coco.py': 'rtdetr_r101vd_coco.py',
    'rtdetrv2_r18vd_dsp_3x_coco.py': 'rtdetr_r18vd_coco.py',
    'rtdetrv2_r34vd_dsp_1x_coco.py': 'rtdetr_r34vd_coco.py',
    'rtdetrv2_r50vd_m_dsp_3x_coco.py': 'rtdetr_r50vd_coco.py',
    'rtdetrv2_r50vd_dsp_1x_coco.py': 'rtdetr_r50vd_coco.py',
    'rtdetrv2_rmt_t.py': 'rtdetr_rmt_t.py',
    'rtdetrv2_mnv4_conv_s_bifpn.py': 'rtdetr_mnv4_conv_s_bifpn.py',
    'rtdetrv2_r18vd_dysample.py': 'rtdetr_r18vd_dysample.py',
    'rtdetrv2_riformer_s12.py': 'rtdetr_riformer_s12.py',
    'rtdetrv2_bhvit.py': 'rtdetr_bhvit.py',
    'rtdetrv2_hgnetv2_l_coco.py': 'rtdetr_hgnetv2_l_coco.py',
    'rtdetrv2_hgnetv2_x_coco.py': 'rtdetr_hgnetv2_x_coco.py',
    'rtdetrv2_r18vd_raccoon.py': 'rtdetr_r18vd_raccoon.py',
    'rtdetrv2_r18vd_dsp_raccoon.py': 'rtdetr_r18vd_raccoon.py',
}
# The official epochs of each schedule in a name.
RTDETRV2_EPOCHS = {'120e': 120, '7x': 84, '6x': 72, '3x': 36, '1x': 12}


def test_rtdetrv2_configs_found():
    # The custom-data twin: tests/test_yolo_dataset.py.
    assert sorted(RTDETRV2_TWINS) == sorted(
        c for c in TOP_LEVEL if c.startswith('rtdetrv2_')
        and not c.endswith('_custom.py'))


@pytest.mark.parametrize('name', sorted(RTDETRV2_TWINS))
def test_rtdetrv2_config_is_rtdetr_with_v2_attention(name):
    """No drift: the model is its RT-DETR twin's with only the decoder's
    cross-attention changed (and R50-M's encoder expansion and evaluation
    layer); the schedule is the official one."""
    v2, v1 = load_config(name), load_config(RTDETRV2_TWINS[name])
    attn = v2.model.decoder.layer_cfg.cross_attn_cfg
    assert attn.type == 'MultiScaleDeformableAttentionV2'
    assert attn.num_points == [4, 4, 4]
    assert attn.offset_scale == 0.5
    assert attn.method == ('discrete' if '_dsp' in name else 'default')
    expected = copy.deepcopy(v1.model)
    expected.decoder.layer_cfg.cross_attn_cfg.update(
        type=attn.type, num_points=[4, 4, 4], offset_scale=0.5,
        method=attn.method)
    # Denoising as the official code builds it
    # (tests/test_rtdetrv2_equivalence.py).
    expected.dn_cfg.update(box_logit_eps=1e-5, pad_with_empty_box=True)
    if '_r50vd_m_' in name:
        expected.neck.expansion = 0.5
        expected.decoder.eval_idx = 2
    if name.startswith('rtdetrv2_r18vd_') and name.endswith('_coco.py'):
        expected.data_preprocessor.batch_augments = None  # official R18
    assert v2.model.to_dict() == expected.to_dict()
    schedule = re.search(r'_(\d+[ex])_coco\.py$', name)
    epochs = RTDETRV2_EPOCHS[schedule[1]] if schedule else \
        v1.train_cfg.max_epochs
    assert v2.train_cfg.max_epochs == epochs
    # RT-DETRv2's stop epoch: the official one for its schedule (the last
    # 3 of 120, 84 and 36 epochs, 2 of 12, 1 of 72); none in the raccoon
    # main job's CPU setting.
    stops = [h.stop_epoch for h in v2.custom_hooks
             if h.type == 'StopAugmentationHook']
    assert stops == ([] if 'raccoon' in name else [
        {120: 117, 84: 81, 72: 71, 36: 33, 12: 10}[epochs]])
    # The official dsp models fine-tune the bilinear release; the raccoon
    # dsp twin trains from scratch like every raccoon run.
    assert ('load_from' in v2 and v2.load_from is not None) == \
        ('_dsp' in name and 'raccoon' not in name)


@pytest.mark.parametrize('name', sorted(
    n for n in RTDETRV2_TWINS if n.endswith('_coco.py')
    and n.startswith(('rtdetrv2_r18', 'rtdetrv2_r34', 'rtdetrv2_r50',
                      'rtdetrv2_r101'))))
def test_rtdetrv2_official_optimizer_groups(name):
    """The official RT-DETRv2 configs' optimizer groups build on their
    model: every pattern selects parameters, the backbone learning rate is
    the official one."""
    cfg = load_config(name)
    model = build_detector_from_config(name)
    groups = build_optim_wrapper(model, cfg.optim_wrapper).optimizer \
        .param_groups
    backbone = {id(p) for p in model.backbone.parameters()}
    conv = next(p for n, p in model.backbone.named_parameters()
                if p.requires_grad and n.endswith('conv.weight'))
    lr = next(g['lr'] for g in groups
              if any(p is conv for p in g['params']))
    official = {'r18': 1e-4, 'r34': 5e-5, 'r50': 1e-5, 'r101': 1e-6}
    assert lr == official[re.match(r'rtdetrv2_(r\d+)', name)[1]]
    assert all(g['lr'] == 1e-4 for g in groups if not any(
        id(p) in backbone for p in g['params']))


@pytest.mark.parametrize('name', sorted(RTDETRV2_TWINS))
def test_rtdetrv2_training_step(name):
    """Every RT-DETRv2 config builds with the v2 attention and takes one
    optimizer step on a tiny batch; the discrete models keep their sampling
    offsets frozen."""
    torch.manual_seed(0)
    model = build_detector_from_config(name)
    attns = [m for m in model.modules()
             if isinstance(m, MultiScaleDeformableAttentionV2)]
    assert len(attns) == len(model.decoder.layers)
    discrete = '_dsp' in name
    assert all(a.method == ('discrete' if discrete else 'default')
               for a in attns)
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    inputs, samples = make_batch(model, sizes=((96, 128), (112, 80)),
                                 num_gts=(2, 1))
    losses = model.loss(inputs, samples)
    total = sum(v.sum() for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    params = dict(model.named_parameters())
    for i in range(len(attns)):
        prefix = f'decoder.layers.{i}.cross_attn.'
        for part in ('value_proj.weight', 'output_proj.weight'):
            assert not torch.equal(params[prefix + part],
                                   before[prefix + part]), prefix + part
        offsets = prefix + 'sampling_offsets.weight'
        assert torch.equal(params[offsets], before[offsets]) == discrete


# DEIM (configs/_base_/models/deim.py, _base_/deim_coco_setting.py): each is
# an RT-DETR model with RT-DETRv2's and DEIM's changes merged, trained with
# DEIM's recipe.
DEIM_TWINS = {
    'deim_rtdetrv2_r18vd_120e_coco.py': 'rtdetrv2_r18vd_120e_coco.py',
    'deim_rtdetrv2_r34vd_120e_coco.py': 'rtdetrv2_r34vd_120e_coco.py',
    'deim_rtdetrv2_r50vd_m_60e_coco.py': 'rtdetrv2_r50vd_m_7x_coco.py',
    'deim_rtdetrv2_r50vd_60e_coco.py': 'rtdetrv2_r50vd_6x_coco.py',
    'deim_rtdetrv2_r101vd_60e_coco.py': 'rtdetrv2_r101vd_6x_coco.py',
    'deim_rtdetrv2_rmt_t.py': 'rtdetrv2_rmt_t.py',
    'deim_rtdetrv2_mnv4_conv_s_bifpn.py': 'rtdetrv2_mnv4_conv_s_bifpn.py',
    'deim_rtdetrv2_r18vd_dysample.py': 'rtdetrv2_r18vd_dysample.py',
    'deim_rtdetrv2_riformer_s12.py': 'rtdetrv2_riformer_s12.py',
    'deim_rtdetrv2_bhvit.py': 'rtdetrv2_bhvit.py',
    'deim_rtdetrv2_hgnetv2_l_coco.py': 'rtdetrv2_hgnetv2_l_coco.py',
    'deim_rtdetrv2_r18vd_raccoon.py': 'rtdetrv2_r18vd_raccoon.py',
}
# Official DEIM schedules (configs/deim_rtdetrv2/*.yml): epochs, flat_epoch,
# no_aug_epoch; the zoo's twins use the 60-epoch one, the raccoon twin its
# CPU-sized scaling.
DEIM_SCHEDULES = {120: (64, 3), 60: (34, 2), 10: (6, 1)}


def test_deim_configs_found():
    assert sorted(DEIM_TWINS) == sorted(
        c for c in TOP_LEVEL if c.startswith('deim_rtdetrv2'))


@pytest.mark.parametrize('name', sorted(DEIM_TWINS))
def test_deim_config_is_rtdetrv2_with_deim_changes(name):
    """No drift: the model is its RT-DETRv2 twin's with only DEIM's changes
    (the ``as_reg`` query position MLP, SiLU in the decoder's FFN and MLPs,
    MAL, the backbone's BatchNorm trained, the batch mixup before the
    multi-scale resize; R50-M's 3 decoder layers); the schedule is DEIM's
    flat-cosine with the epoch policy [start, flat, stop]."""
    deim, v2 = load_config(name), load_config(DEIM_TWINS[name])
    silu = dict(type='SiLU')
    expected = copy.deepcopy(v2.model)
    expected.decoder.update(query_pos_method='as_reg', mlp_act_cfg=silu)
    expected.decoder.layer_cfg.ffn_cfg.act_cfg = silu
    expected.bbox_head.mlp_act_cfg = silu
    expected.bbox_head.criterion.losses = dict(
        mal=dict(type='MatchabilityAwareLoss', gamma=1.5, loss_weight=1.0),
        bbox=dict(type='MatchedL1Loss', loss_weight=5.0),
        iou=dict(type='MatchedGIoULoss', loss_weight=2.0))
    expected.backbone.update(frozen_stages=-1, norm_eval=False)
    raccoon = 'raccoon' in name
    sizes = (256, 384) if raccoon else (480, 800)
    expected.data_preprocessor.batch_augments = [
        dict(type='BatchRollMixup', prob=0.5, lambda_range=(0.45, 0.55)),
        dict(type='BatchSyncRandomResize', random_size_range=sizes,
             size_divisor=32, interval=1)]
    if '_r50vd_m_' in name:
        expected.decoder.num_layers = 3
    assert deim.model.to_dict() == expected.to_dict()

    epochs = deim.train_cfg.max_epochs
    flat, no_aug = DEIM_SCHEDULES[epochs]
    [scheduler] = deim.param_scheduler
    assert scheduler.type == 'FlatCosineLR'
    assert (scheduler.flat_epoch, scheduler.no_aug_epoch, scheduler.end,
            scheduler.lr_gamma) == (flat, no_aug, epochs, 0.5)
    assert scheduler.warmup_iters == (40 if raccoon else 2000)
    [policy] = [h for h in deim.custom_hooks
                if h.type == 'StopAugmentationHook']
    assert (policy.start_epoch, policy.flat_epoch, policy.stop_epoch) == (
        1 if raccoon else 4, flat, epochs - no_aug)
    dataset = deim.train_dataloader.dataset
    assert dataset.type == 'MultiImageMixDataset'
    assert [t['type'] for t in dataset.dataset.pipeline] == [
        'SafeLoadImageFromFile', 'LoadAnnotations']
    mosaic = dataset.pipeline[0]
    assert (mosaic.type, mosaic.img_scale, mosaic.prob) == (
        'DEIMMosaic', 160 if raccoon else 320, 0.5)
    # The wrapped dataset is the twin's, with the loading steps only.
    expected_dataset = copy.deepcopy(v2.train_dataloader.dataset)
    expected_dataset.pipeline = expected_dataset.pipeline[:2]
    assert dataset.dataset.to_dict() == expected_dataset.to_dict()
    if not raccoon:
        assert deim.optim_wrapper.optimizer.lr == 2e-4


# D-FINE and DEIM-D-FINE (configs/_base_/models/dfine.py): the official
# HGNetv2 models (configs/deim_dfine/{dfine,deim}_hgnetv2_*_coco.yml of the
# official DEIM code) and the zoo variants' twins.
DFINE_FRAGMENT = osp.join(CONFIG_DIR, '_base_', 'models', 'dfine.py')
# Each official config: epochs, the learning rate's (warm-up iterations,
# flat_epoch, no_aug_epoch, lr_gamma), the policy (start, flat, stop), lr,
# the backbone's weights' lr, weight decay, multi-scale training.
# D-FINE: `lrsheduler: flatcosine`, lr_gamma 1, 500 warm-up iterations,
# flat to the end (`flat_epoch: 4000000`, `no_aug_epoch: 0`); DEIM-D-FINE-N:
# lr_gamma 1.0 with `flat_epoch: 7800` (past its end: here to the last
# no_aug_epoch, the same constant lr). N: `base_size_repeat: ~`.
DFINE_OFFICIAL = {
    'dfine_hgnetv2_n_coco.py': (160, (500, 160, 0, 1.0), (0, 148, 148),
                                8e-4, 4e-4, 1e-4, False),
    'dfine_hgnetv2_s_coco.py': (132, (500, 132, 0, 1.0), (0, 120, 120),
                                2e-4, 1e-4, 1e-4, True),
    'dfine_hgnetv2_m_coco.py': (132, (500, 132, 0, 1.0), (0, 120, 120),
                                2e-4, 2e-5, 1e-4, True),
    'dfine_hgnetv2_l_coco.py': (80, (500, 80, 0, 1.0), (0, 72, 72),
                                2.5e-4, 1.25e-5, 1.25e-4, True),
    'dfine_hgnetv2_x_coco.py': (80, (500, 80, 0, 1.0), (0, 72, 72),
                                2.5e-4, 2.5e-6, 1.25e-4, True),
    'deim_dfine_hgnetv2_n_coco.py': (160, (2000, 148, 12, 1.0),
                                     (4, 78, 148), 8e-4, 4e-4, 1e-4, False),
    'deim_dfine_hgnetv2_s_coco.py': (132, (2000, 64, 12, 0.5),
                                     (4, 64, 120), 4e-4, 2e-4, 1e-4, True),
    'deim_dfine_hgnetv2_m_coco.py': (102, (2000, 49, 12, 0.5),
                                     (4, 49, 90), 4e-4, 4e-5, 1e-4, True),
    'deim_dfine_hgnetv2_l_coco.py': (58, (2000, 29, 8, 0.5), (4, 29, 50),
                                     5e-4, 2.5e-5, 1.25e-4, True),
    'deim_dfine_hgnetv2_x_coco.py': (58, (2000, 29, 8, 0.5), (4, 29, 50),
                                     5e-4, 5e-6, 1.25e-4, True),
}
# Parameters of the official models (all, trainable), HGNetv2 built
# without pretrained weights: D-FINE-L / X hold their frozen BatchNorm as
# FrozenBatchNorm2d buffers and freeze the stem; `up` and `reg_scale` are
# frozen parameters there.
DFINE_OFFICIAL_NUM_PARAMS = {
    'dfine_hgnetv2_n_coco.py': (3_782_693, 3_782_691),
    'dfine_hgnetv2_s_coco.py': (10_321_877, 10_321_875),
    'dfine_hgnetv2_m_coco.py': (19_590_064, 19_590_062),
    'dfine_hgnetv2_l_coco.py': (31_244_152, 31_219_222),
    'dfine_hgnetv2_x_coco.py': (62_621_560, 62_596_118),
    'deim_dfine_hgnetv2_n_coco.py': (3_782_693, 3_782_691),
    'deim_dfine_hgnetv2_s_coco.py': (10_321_877, 10_321_875),
    'deim_dfine_hgnetv2_m_coco.py': (19_590_064, 19_590_062),
    'deim_dfine_hgnetv2_l_coco.py': (31_289_848, 31_289_846),
    'deim_dfine_hgnetv2_x_coco.py': (62_715_480, 62_715_478),
}
# Our D-FINE-L / X keep their frozen BatchNorm as parameters without
# gradient.
DFINE_FROZEN_NORM_PARAMS = {
    'dfine_hgnetv2_l_coco.py': 45_696, 'dfine_hgnetv2_x_coco.py': 93_920}
# The twins: each is an RT-DETR config's model with `dfine_model` (or
# `deim_dfine_model`) merged, on D-FINE-S's (DEIM-D-FINE-S's) schedule.
DFINE_TWINS = {
    'dfine_rmt_t.py': 'rtdetr_rmt_t.py',
    'dfine_mnv4_conv_s_bifpn.py': 'rtdetr_mnv4_conv_s_bifpn.py',
    'dfine_r18vd_dysample.py': 'rtdetr_r18vd_dysample.py',
    'dfine_riformer_s12.py': 'rtdetr_riformer_s12.py',
    'dfine_bhvit.py': 'rtdetr_bhvit.py',
    'dfine_r18vd.py': 'rtdetr_r18vd_coco.py',
    'dfine_r18vd_raccoon.py': 'rtdetr_r18vd_raccoon.py',
}
DFINE_TWINS.update({f'deim_{k}': v for k, v in DFINE_TWINS.items()})


def test_dfine_configs_found():
    assert sorted([*DFINE_TWINS, *DFINE_OFFICIAL]) == sorted(
        c for c in TOP_LEVEL if c.startswith(('dfine_', 'deim_dfine_')))


@pytest.mark.parametrize('name', sorted(DFINE_TWINS))
def test_dfine_twin_is_rtdetr_with_dfine_changes(name):
    """No drift: the model is its RT-DETR twin's with exactly the changes of
    _base_/models/dfine.py (D-FINE's decoder on the twin's three levels,
    head, criterion and denoising; DEIM-D-FINE's activations, MAL, trained
    backbone BatchNorm and batch mixup); the schedule is D-FINE-S's or
    DEIM-D-FINE-S's (the raccoon twins: the raccoon setting, and DEIM's
    CPU-sized recipe)."""
    twin, base = load_config(name), load_config(DFINE_TWINS[name])
    fragment = Config.fromfile(DFINE_FRAGMENT)
    deim = name.startswith('deim_')
    raccoon = 'raccoon' in name
    expected = copy.deepcopy(base.model)
    expected.merge(fragment.deim_dfine_model if deim else
                   fragment.dfine_model)
    if deim and raccoon:  # the raccoon setting's sizes
        expected.data_preprocessor.batch_augments[1].random_size_range = (
            256, 384)
    assert twin.model.to_dict() == expected.to_dict()
    model = twin.model
    assert (model.type, model.bbox_head.type) == ('DFINE', 'DFINEHead')
    attn = model.decoder.layer_cfg.cross_attn_cfg
    assert attn.type == 'FDRDeformableAttention'
    assert len(attn.num_points) == model.num_feature_levels == 3
    cls = 'mal' if deim else 'cls'
    assert set(model.bbox_head.criterion.losses) == {
        cls, 'bbox', 'iou', 'fgl', 'ddf'}

    epochs = twin.train_cfg.max_epochs
    [policy] = [h for h in twin.custom_hooks
                if h.type == 'StopAugmentationHook'] or [None]
    [scheduler] = twin.param_scheduler
    if raccoon and not deim:  # the raccoon setting (the raccoon test)
        assert policy is None and scheduler.type == 'LinearLR'
        return
    assert scheduler.type == 'FlatCosineLR'
    if deim:
        flat, no_aug = (6, 1) if raccoon else (64, 12)
        assert epochs == (10 if raccoon else 132)
        assert (scheduler.warmup_iters, scheduler.flat_epoch,
                scheduler.no_aug_epoch, scheduler.lr_gamma) == (
            40 if raccoon else 2000, flat, no_aug, 0.5)
        assert (policy.start_epoch, policy.flat_epoch, policy.stop_epoch) == (
            1 if raccoon else 4, flat, epochs - no_aug)
        assert twin.train_dataloader.dataset.type == 'MultiImageMixDataset'
    else:
        assert epochs == 132 and policy.stop_epoch == 120
        assert (scheduler.warmup_iters, scheduler.flat_epoch,
                scheduler.no_aug_epoch, scheduler.lr_gamma) == (
            500, 132, 0, 1.0)
        assert twin.train_dataloader.dataset.pipeline == \
            base.train_dataloader.dataset.pipeline
    assert scheduler.end == epochs
    if not raccoon:
        lr = twin.optim_wrapper.optimizer.lr
        assert lr == (4e-4 if deim else 2e-4)
        [backbone_group] = [
            g for g in twin.optim_wrapper.paramwise_cfg.groups
            if g.pattern.startswith(r'^backbone\.')]
        full_lr = name.endswith(('_bhvit.py', '_r18vd.py',
                                 '_r18vd_dysample.py'))
        assert backbone_group.lr == (lr if full_lr else lr / 2)
        [ema] = [h for h in twin.custom_hooks if h.type == 'EMAHook']
        assert (ema.momentum, ema.gamma) == (1e-4, 1000)


@pytest.mark.parametrize('name', sorted(DFINE_OFFICIAL))
def test_dfine_official_schedule(name):
    """The official D-FINE / DEIM-D-FINE schedule of each size: epochs, the
    flat-cosine learning rate, the augmentation policy (DEIM: mosaic and
    mixup from `start` until `flat`), the optimizer's lr and weight decay,
    the EMA's 1000-step ramp and the multi-scale training."""
    cfg = load_config(name)
    epochs, (warmup, flat, no_aug, gamma), (start, policy_flat, stop), lr, \
        backbone_lr, weight_decay, multi_scale = DFINE_OFFICIAL[name]
    deim = name.startswith('deim_')
    assert cfg.train_cfg.max_epochs == epochs
    [scheduler] = cfg.param_scheduler
    assert (scheduler.type, scheduler.warmup_iters, scheduler.flat_epoch,
            scheduler.no_aug_epoch, scheduler.lr_gamma, scheduler.end) == (
        'FlatCosineLR', warmup, flat, no_aug, gamma, epochs)
    [policy] = [h for h in cfg.custom_hooks
                if h.type == 'StopAugmentationHook']
    assert (policy.get('start_epoch', 0),
            policy.get('flat_epoch', policy.stop_epoch),
            policy.stop_epoch) == (start, policy_flat, stop)
    [ema] = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
    assert (ema.momentum, ema.gamma) == (1e-4, 1000)
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == (
        'AdamW', lr, weight_decay)
    assert cfg.optim_wrapper.clip_grad.max_norm == 0.1
    [backbone_group] = [g for g in cfg.optim_wrapper.paramwise_cfg.groups
                        if g.pattern.startswith(r'^backbone\.')]
    assert backbone_group.lr == backbone_lr
    augments = [a.type for a in
                cfg.model.data_preprocessor.batch_augments or []]
    assert augments == (['BatchRollMixup'] if deim else []) + (
        ['BatchSyncRandomResize'] if multi_scale else [])
    # 32 images per batch (N: 128), 8 GPUs.
    batch = 128 if '_n_' in name else 32
    assert cfg.train_dataloader.batch_size * 8 == batch
    assert cfg.auto_scale_lr.base_batch_size == batch
    assert (cfg.train_dataloader.dataset.type == 'MultiImageMixDataset') \
        == deim


@pytest.mark.parametrize('name', sorted(DFINE_OFFICIAL))
def test_dfine_official_model_size(name):
    """The official model's parameters less the denoising embedding's
    padding row and the two frozen scalars (buffers here), and exactly its
    trainable ones (D-FINE-L / X: the stem frozen, the frozen BatchNorm held
    as parameters without gradient). N has two levels of width 128 without
    input projections; X projects its 384-channel levels and decodes with
    reg_scale 8."""
    size = re.search(r'_hgnetv2_(\w)_coco', name)[1]
    width = 128 if size == 'n' else 256
    official, official_trainable = DFINE_OFFICIAL_NUM_PARAMS[name]
    model = build_detector_from_config(name)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert total == official - width - 2 + DFINE_FROZEN_NORM_PARAMS.get(
        name, 0)
    assert trainable == official_trainable - width
    assert model.embed_dims == width
    assert len(model.input_proj) == (2 if size == 'n' else 3)
    assert all(isinstance(p, torch.nn.Identity) for p in model.input_proj) \
        == (size != 'x')
    assert float(model.decoder.reg_scale) == (8.0 if size == 'x' else 4.0)
    stem_frozen = size in 'lx' and not name.startswith('deim_')
    assert all(p.requires_grad != stem_frozen
               for p in model.backbone.stem.parameters())
