"""RIFormer backbone (mmpretrain's, wrapped for mmdet) and its deploy script.

Covers the backbone contract of the wrapper, the exactness of mmpretrain's
re-parameterisation inside an RT-DETR detector for every arch (through
tools/deploy/reparam_riformer.py and the deploy configs), the script's error
messages, and the script end to end on a checkpoint from a short raccoon
training run (tools/train.py, in a subprocess).
"""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmpretrain.models.backbones.riformer import RIFormerBlock

from mmdet.registry import MODELS
from rtdetr_zoo.deploy import riformer_reparam
from rtdetr_zoo.engine import read_checkpoint

from .utils import (REPO_ROOT, SMALL_DETECTOR, build_detector_from_config,
                    config_path, make_batch)

ARCHS = ('s12', 's24', 's36', 'm36', 'm48')
ARCH_WIDTHS = {
    's12': ([2, 2, 6, 2], [64, 128, 320, 512]),
    's24': ([4, 4, 12, 4], [64, 128, 320, 512]),
    's36': ([6, 6, 18, 6], [64, 128, 320, 512]),
    'm36': ([6, 6, 18, 6], [96, 192, 384, 768]),
    'm48': ([8, 8, 24, 8], [96, 192, 384, 768]),
}
# A 4-stage RIFormer small enough for unit tests (7 network entries).
TINY_ARCH = dict(layers=[1, 1, 2, 1], embed_dims=[8, 16, 24, 32])
# Fast detectors (on top of tests.utils.SMALL_DETECTOR's few queries): one
# decoder layer, no backbone init (random_riformer_params replaces it).
FAST = {
    'model.decoder.num_layers': 1,
    'model.backbone.init_cfg': None,
}


@pytest.fixture(scope='module')
def tool():
    """The logic of tools/deploy/reparam_riformer.py."""
    return riformer_reparam


def build_backbone(**kwargs):
    return MODELS.build(dict(type='RIFormer', **kwargs))


def random_riformer_params(backbone, seed=0):
    """Give every token mixer, norm and layer scale a non-trivial value, so
    that the mixer matters and a wrong fusion would show (at init the layer
    scales are 1e-5/1e-6 and the mixer is nearly invisible)."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(t, low, high):
        t.copy_(torch.rand(t.shape, generator=gen) * (high - low) + low)

    with torch.no_grad():
        for block in backbone.modules():
            if not isinstance(block, RIFormerBlock):
                continue
            uniform(block.norm1.weight, 0.5, 1.5)
            uniform(block.norm1.bias, -0.5, 0.5)
            uniform(block.token_mixer.affine.weight, 0.0, 2.0)
            uniform(block.token_mixer.affine.bias, -0.5, 0.5)
            uniform(block.layer_scale_1, 0.05, 0.3)
            uniform(block.layer_scale_2, 0.05, 0.3)


def max_diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


# ----------------------------------------------------------------------------
# The wrapper: backbone contract
# ----------------------------------------------------------------------------


def test_stages_map_onto_mmpretrain_network_positions():
    """The contract's stage indices (tests/test_backbone_contract.py checks
    the contract itself) select mmpretrain's network entries 0/2/4/6, each
    with its own ``norm{position}``; freezing k stages freezes the patch
    embedding, the first k stages with the patch embeddings in front of
    them, and their norms."""
    backbone = build_backbone(arch='s12')
    assert backbone.out_indices == (1, 2, 3)
    assert backbone.out_channels == [128, 320, 512]
    assert backbone.out_strides == [8, 16, 32]
    assert {n for n, _ in backbone.named_children()
            if n.startswith('norm')} == {'norm2', 'norm4', 'norm6'}
    assert build_backbone(arch='m36').out_channels == [192, 384, 768]
    backbone = build_backbone(arch=TINY_ARCH, out_indices=(0, 1, 3),
                              frozen_stages=2).train()
    frozen = [backbone.patch_embed, backbone.network[0], backbone.network[1],
              backbone.network[2], backbone.norm0, backbone.norm2]
    for module in frozen:
        assert all(not p.requires_grad for p in module.parameters())
        assert not module.training
    for module in (backbone.network[3], backbone.network[6], backbone.norm6):
        assert all(p.requires_grad for p in module.parameters())
        assert module.training


def test_bn_fusion_is_refused():
    backbone = build_backbone(arch=TINY_ARCH, norm_cfg=dict(type='BN'))
    with pytest.raises(ValueError, match='BatchNorm'):
        backbone.switch_to_deploy()


def test_loads_an_mmpretrain_classifier_checkpoint(tmp_path):
    """ImageNet weights of mmpretrain's classifier (``backbone.*`` keys, only
    ``norm6``) load through ``init_cfg`` with ``prefix='backbone.'``."""
    from mmpretrain.models.backbones import RIFormer as MMPretrainRIFormer
    torch.manual_seed(0)
    classifier_backbone = MMPretrainRIFormer(arch='s12')
    random_riformer_params(classifier_backbone)
    state = {f'backbone.{k}': v
             for k, v in classifier_backbone.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(10, 512)
    ckpt = str(tmp_path / 'cls.pth')
    torch.save(dict(state_dict=state), ckpt)
    backbone = build_backbone(
        arch='s12',
        init_cfg=dict(type='Pretrained', checkpoint=ckpt, prefix='backbone.'))
    backbone.init_weights()
    loaded = backbone.state_dict()
    for key, value in classifier_backbone.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert {'norm2.weight', 'norm4.weight'} <= loaded.keys()


def test_mmpretrain_fusion_is_exact_and_the_check_is_sensitive():
    """switch_to_deploy (mmpretrain's) keeps the features; dropping the
    mixer's contribution (norm1 copied as is) would not, so the comparison
    has the power to see a wrong fusion."""
    torch.manual_seed(0)
    backbone = build_backbone(arch=TINY_ARCH)
    random_riformer_params(backbone)
    backbone.eval()
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        before = backbone(x)
    wrong = build_backbone(arch=TINY_ARCH, deploy=True).eval()
    naive = {k.replace('norm1', 'norm_reparam'): v
             for k, v in backbone.state_dict().items()
             if 'token_mixer' not in k}
    wrong.load_state_dict(naive, strict=True)
    backbone.switch_to_deploy()
    assert backbone.deploy
    assert not any(hasattr(m, 'token_mixer') for m in backbone.modules())
    with torch.no_grad():
        after = backbone(x)
        naive_out = wrong(x)
    assert max_diff(before, after) <= 1e-5
    assert max_diff(before, naive_out) > 1e-2


# ----------------------------------------------------------------------------
# Every arch: detector predictions before/after, deploy configs load cleanly
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('arch', ARCHS)
def test_detector_reparam_matches_and_loads_into_deploy_config(
        arch, tool, tmp_path):
    config = config_path(f'rtdetr_riformer_{arch}')
    deploy_config = config_path(f'deploy/rtdetr_riformer_{arch}_deploy')
    torch.manual_seed(0)
    model = build_detector_from_config(config, **FAST)
    assert model.backbone.out_channels == ARCH_WIDTHS[arch][1][1:]
    random_riformer_params(model.backbone)
    model.eval()
    ckpt = str(tmp_path / 'trained.pth')
    torch.save(dict(meta=dict(epoch=1), state_dict=model.state_dict()), ckpt)

    out = str(tmp_path / 'deploy' / 'deployed.pth')
    options = {**SMALL_DETECTOR, **FAST}
    report = tool.reparameterize(config, ckpt, out, cfg_options=options,
                                 deploy_config=deploy_config)
    layers, widths = ARCH_WIDTHS[arch]
    # Per block, norm1 + the depthwise affine (4 * dim) become norm_reparam
    # (2 * dim).
    saved_params = sum(2 * n * d for n, d in zip(layers, widths))
    assert report['deploy_config'] == deploy_config
    assert report['missing_keys'] == report['unexpected_keys'] == 0
    assert report['backbone_params_before'] == sum(
        p.numel() for p in model.backbone.parameters())
    assert (report['backbone_params_before'] -
            report['backbone_params_after']) == saved_params
    assert (report['params_before'] - report['params_after']) == saved_params

    # The script loaded OUT into the deploy config (0 missing/unexpected
    # keys); here the written weights drive a detector with the deploy
    # structure (the trained one, switched in place), compared with the
    # predictions of the training-time detector.
    inputs, samples = make_batch(model, sizes=((64, 64), ), num_gts=(1, ))
    with torch.no_grad():
        ref = model.predict(inputs, samples)
    state = torch.load(out, map_location='cpu', weights_only=True)
    assert set(state) == {'meta', 'state_dict'}
    model.backbone.switch_to_deploy()
    model.load_state_dict(state['state_dict'], strict=True)
    with torch.no_grad():
        new = model.predict(inputs, samples)
    for a, b in zip(ref, new):
        a, b = a.pred_instances, b.pred_instances
        assert len(a) == len(b) > 0
        assert torch.equal(a.labels, b.labels)
        assert (a.bboxes - b.bboxes).abs().max().item() <= 1e-4
        assert (a.scores - b.scores).abs().max().item() <= 1e-4


# ----------------------------------------------------------------------------
# The script's errors
# ----------------------------------------------------------------------------


@pytest.fixture(scope='module')
def s12_checkpoint(tmp_path_factory):
    model = build_detector_from_config('rtdetr_riformer_s12', **FAST)
    path = str(tmp_path_factory.mktemp('s12') / 's12.pth')
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


def test_script_rejects_non_riformer_inputs(tool, s12_checkpoint, tmp_path):
    s12 = config_path('rtdetr_riformer_s12')
    out = str(tmp_path / 'out.pth')
    cases = [
        (config_path('rtdetr_r18vd_coco'), s12_checkpoint,
         "backbone type 'ResNetVd', not RIFormer"),
        (config_path('deploy/rtdetr_riformer_s12_deploy'), s12_checkpoint,
         'already sets model.backbone.deploy=True'),
        (s12, str(tmp_path / 'missing.pth'), 'checkpoint file not found'),
        (str(tmp_path / 'missing.py'), s12_checkpoint,
         'config file not found'),
        (s12, s12_checkpoint, 'OUT must differ'),
    ]
    for config, ckpt, match in cases:
        target = ckpt if match == 'OUT must differ' else out
        with pytest.raises(tool.ReparamError, match=match):
            tool.reparameterize(config, ckpt, target, cfg_options=FAST)

    resnet = str(tmp_path / 'resnet.pth')
    torch.save(dict(state_dict={'backbone.stem.0.conv.weight':
                                torch.zeros(1)}), resnet)
    with pytest.raises(tool.ReparamError,
                       match='not a RIFormer detector checkpoint'):
        tool.reparameterize(s12, resnet, out, cfg_options=FAST)
    with pytest.raises(tool.ReparamError, match=r'has no ema_state_dict'):
        tool.reparameterize(s12, s12_checkpoint, out, cfg_options=FAST,
                            no_ema=True)
    # A checkpoint of another arch names the mismatching keys.
    with pytest.raises(tool.ReparamError, match='missing keys'):
        tool.reparameterize(config_path('rtdetr_riformer_s24'),
                            s12_checkpoint, out, cfg_options=FAST)
    # A converted checkpoint cannot be converted twice.
    tool.reparameterize(s12, s12_checkpoint, out, cfg_options=FAST)
    with pytest.raises(tool.ReparamError, match='already re-parameterised'):
        tool.reparameterize(s12, out, str(tmp_path / 'twice.pth'),
                            cfg_options=FAST)
    assert not osp.exists(tmp_path / 'twice.pth')


# ----------------------------------------------------------------------------
# End to end: short raccoon training, then the script from the command line
# ----------------------------------------------------------------------------


def test_script_end_to_end_on_raccoon_training_checkpoint(tool, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    work_dir = tmp_path / 'work'
    train = [
        sys.executable, 'tools/train.py',
        'configs/rtdetr_riformer_s12_raccoon.py', '--work-dir', str(work_dir),
        '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_begin=2',
        'train_dataloader.dataset.indices=2', 'train_dataloader.batch_size=1',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'model.data_preprocessor.batch_augments.0.random_size_range=(96,128)',
        'model.backbone.init_cfg=None', 'randomness.seed=0'
    ]
    done = subprocess.run(train, cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = work_dir / 'epoch_1.pth'
    trained = read_checkpoint(str(ckpt))
    assert trained['meta']['iter'] == 2
    assert 'ema_state_dict' in trained

    out = tmp_path / 'deploy' / 'raccoon_s12_deploy.pth'
    deploy_config = 'configs/deploy/rtdetr_riformer_s12_raccoon_deploy.py'
    config = config_path('rtdetr_riformer_s12_raccoon')
    convert = [
        sys.executable, 'tools/deploy/reparam_riformer.py',
        'configs/rtdetr_riformer_s12_raccoon.py', str(ckpt), str(out),
        '--deploy-config', deploy_config
    ]
    done = subprocess.run(convert, cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '0 missing keys, 0 unexpected keys' in done.stdout
    assert 'EMA weights' in done.stdout
    assert 'detector parameters:' in done.stdout
    assert 'backbone parameters: 11,409,728 -> 11,403,072' in done.stdout

    # The deploy detector reproduces the trained (EMA) detector.
    no_init = {'model.backbone.init_cfg': None}
    model = build_detector_from_config(config, small=False, **no_init)
    model.load_state_dict(trained['state_dict'], strict=True)
    deployed = build_detector_from_config(
        osp.join(REPO_ROOT, deploy_config), small=False, **no_init)
    deployed.load_state_dict(
        torch.load(out, map_location='cpu', weights_only=True)['state_dict'],
        strict=True)
    model.eval()
    deployed.eval()
    inputs, samples = make_batch(model, sizes=((96, 128), (112, 80)))
    with torch.no_grad():
        ref = model.predict(inputs, samples)
        new = deployed.predict(inputs, samples)
    for a, b in zip(ref, new):
        a, b = a.pred_instances, b.pred_instances
        assert (a.bboxes - b.bboxes).abs().max().item() <= 1e-4
        assert (a.scores - b.scores).abs().max().item() <= 1e-4

    # --no-ema selects the raw weights, which differ from the EMA ones.
    raw, source = tool.select_state_dict(trained, str(ckpt), no_ema=True)
    assert source.startswith('raw')
    key = 'bbox_head.cls_branches.0.weight'
    assert torch.equal(raw[key], trained['ema_state_dict']['module.' + key])
    assert not torch.equal(raw[key], trained['state_dict'][key])
    assert raw.keys() == trained['state_dict'].keys()
