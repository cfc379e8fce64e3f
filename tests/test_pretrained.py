"""Pretrained weights, offline: every loader on checkpoints with the
published key names and shapes.

* ImageNet backbones through their COCO config's own ``init_cfg`` (the URL
  replaced by a local file):
  the official RT-DETR PResNet-18 layout (the fixture's backbone tensors,
  whose features the official code computed), the official RT-DETR HGNetv2-L
  layout (generated from the published module structure), mmpretrain's
  RIFormer classifier layout (features equal mmpretrain's model). timm's
  MobileNetV4 and the official RMT layouts are in their own test files.
* Official RT-DETR COCO checkpoints (``{'ema': {'module': ...}}``) through
  ``mmengine.runner.load_checkpoint`` (what ``load_from``, ``tools/test.py``
  and ``init_detector`` use) and the raccoon fine-tuning config.
* Clear errors: unreachable URL, wrong family, truncated file, no COCO data.
* Every COCO config names a public checkpoint; raccoon configs do not.
"""
import copy
import glob
import logging
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import load_checkpoint
from torch import nn

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from rtdetr_zoo.engine import checkpoint_layout, convert_checkpoint_layout

from .utils import (CONFIG_DIR, OFFICIAL_FIXTURE, REPO_ROOT,
                    build_detector_from_config, load_config)

RACCOON = osp.join(REPO_ROOT, 'data', 'raccoon')


@pytest.fixture(scope='module')
def official():
    return torch.load(OFFICIAL_FIXTURE, map_location='cpu')


@pytest.fixture
def log_lines():
    """Messages logged to the current MMLogger during the test."""
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def pretrained(checkpoint, **kwargs):
    return dict(type='Pretrained', checkpoint=str(checkpoint), **kwargs)


def config_backbone(name, checkpoint=None):
    """The backbone of ``configs/<name>`` with its own ``init_cfg``, the
    public URL replaced by a local ``checkpoint``."""
    backbone = copy.deepcopy(load_config(name).model.backbone)
    assert backbone.init_cfg.type == 'Pretrained'
    if checkpoint is not None:
        backbone.init_cfg.checkpoint = str(checkpoint)
    return MODELS.build(backbone)


# ----------------------------------------------------------------------------
# ImageNet backbones
# ----------------------------------------------------------------------------


def test_official_presnet18_layout_loads_and_gives_official_features(
        official, tmp_path, log_lines):
    """The official ResNet18_vd ImageNet file is PResNet's bare state dict
    (``conv1.conv1_1.conv.weight``, ``res_layers.0.blocks.0.short...``): the
    fixture's ``backbone.*`` tensors without the prefix."""
    state = {k[len('backbone.'):]: v.float()
             for k, v in official['state_dict'].items()
             if k.startswith('backbone.')}
    assert any(k.startswith('res_layers.1.blocks.0.short.conv.conv.')
               for k in state)
    path = tmp_path / 'ResNet18_vd_pretrained_from_paddle.pth'
    torch.save(state, path)
    backbone = config_backbone('rtdetr_r18vd_coco', path)
    backbone.init_weights()
    own = [k for k in backbone.state_dict()
           if not k.endswith('num_batches_tracked')]
    assert any(f'loaded {len(own)}/{len(own)} tensors' in line
               for line in log_lines), log_lines
    assert not any('keep their initialisation' in line for line in log_lines)
    images = official['images_u8'].float() / 255
    with torch.no_grad():
        feats = backbone.eval()(images)
    for ours, ref in zip(feats, official['backbone_feats']):
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def official_hgnetv2_l_state_dict(seed=0):
    """A random state dict in the layout of the official RT-DETR HGNetv2
    (lyuwenyu/RT-DETR ``rtdetrv2_pytorch/src/nn/backbone/hgnetv2.py``,
    ``name='L'``), written from its module structure: ``ConvBNAct`` is
    ``conv`` (``conv.1`` after a ``ZeroPad2d`` for 'same' padding) + ``bn``;
    a stage is ``downsample`` + ``blocks.b`` of ``layers.l`` and the
    ``aggregation_{squeeze,excitation}_conv``."""
    gen = torch.Generator().manual_seed(seed)
    state = {}

    def conv_bn_act(name, cin, cout, k, groups=1, same=False):
        conv = f'{name}.conv.1' if same else f'{name}.conv'
        state[f'{conv}.weight'] = torch.randn(cout, cin // groups, k, k,
                                              generator=gen) * 0.1
        state[f'{name}.bn.weight'] = torch.rand(cout, generator=gen) + 0.5
        state[f'{name}.bn.bias'] = torch.randn(cout, generator=gen) * 0.1
        state[f'{name}.bn.running_mean'] = torch.randn(cout, generator=gen)
        state[f'{name}.bn.running_var'] = torch.rand(cout, generator=gen) + 1
        state[f'{name}.bn.num_batches_tracked'] = torch.tensor(7)

    conv_bn_act('stem.stem1', 3, 32, 3)
    conv_bn_act('stem.stem2a', 32, 16, 2, same=True)
    conv_bn_act('stem.stem2b', 16, 32, 2, same=True)
    conv_bn_act('stem.stem3', 64, 32, 3)
    conv_bn_act('stem.stem4', 32, 48, 1)
    # (in, mid, out, blocks, downsample, light, kernel) of name='L'.
    stages = [(48, 48, 128, 1, False, False, 3),
              (128, 96, 512, 1, True, False, 3),
              (512, 192, 1024, 3, True, True, 5),
              (1024, 384, 2048, 1, True, True, 5)]
    for s, (cin, mid, cout, blocks, down, light, k) in enumerate(stages):
        if down:
            conv_bn_act(f'stages.{s}.downsample', cin, cin, 3, groups=cin)
        for b in range(blocks):
            block_in = cin if b == 0 else cout
            name = f'stages.{s}.blocks.{b}'
            for i in range(6):
                layer_in = block_in if i == 0 else mid
                if light:
                    conv_bn_act(f'{name}.layers.{i}.conv1', layer_in, mid, 1)
                    conv_bn_act(f'{name}.layers.{i}.conv2', mid, mid, k,
                                groups=mid)
                else:
                    conv_bn_act(f'{name}.layers.{i}', layer_in, mid, k)
            conv_bn_act(f'{name}.aggregation_squeeze_conv',
                        block_in + 6 * mid, cout // 2, 1)
            conv_bn_act(f'{name}.aggregation_excitation_conv', cout // 2,
                        cout, 1)
    return state


def test_official_hgnetv2_l_layout_loads_every_tensor(tmp_path, log_lines):
    state = official_hgnetv2_l_state_dict()
    path = tmp_path / 'PPHGNetV2_L_ssld_pretrained_from_paddle.pth'
    torch.save(state, path)
    backbone = config_backbone('rtdetr_hgnetv2_l_coco', path)
    backbone.init_weights()
    own = backbone.state_dict()
    assert len(own) == len(state)
    assert not any('keep their initialisation' in line or 'not used' in line
                   for line in log_lines), log_lines
    # Spot checks of the layout mapping, including the block shift behind
    # the stride-2 depthwise conv and the light (1x1 + depthwise) layers.
    pairs = {
        'stem.stem2a.conv.1.weight': 'stem.stem2a.conv.weight',
        'stages.1.downsample.conv.weight': 'stages.1.0.conv.weight',
        'stages.0.blocks.0.layers.5.bn.running_var':
        'stages.0.0.convs.5.bn.running_var',
        'stages.2.blocks.2.layers.3.conv2.conv.weight':
        'stages.2.3.convs.3.conv2.conv.weight',
        'stages.3.blocks.0.aggregation_excitation_conv.bn.bias':
        'stages.3.1.excite.bn.bias',
    }
    for theirs, ours in pairs.items():
        assert torch.equal(own[ours], state[theirs]), (theirs, ours)


def test_mmpretrain_riformer_classifier_checkpoint_gives_the_same_features(
        tmp_path, log_lines):
    """mmpretrain's ``riformer-s12_32xb128_in1k`` layout: ``state_dict``
    with ``backbone.*`` (only ``norm6``: the classifier outputs the last
    stage) and ``head.*``."""
    from mmpretrain.models.backbones import RIFormer as MMPretrainRIFormer
    torch.manual_seed(0)
    reference = MMPretrainRIFormer(arch='s12', out_indices=-1).eval()
    for param in reference.parameters():
        param.data.uniform_(-0.5, 0.5)
    state = {f'backbone.{k}': v for k, v in reference.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(1000, 512)
    state['head.fc.bias'] = torch.zeros(1000)
    path = tmp_path / 'riformer-s12_32xb128_in1k.pth'
    torch.save(dict(meta=dict(), state_dict=state), path)
    backbone = config_backbone('rtdetr_riformer_s12', path)
    backbone.init_weights()
    assert any('loaded' in line and str(path) in line for line in log_lines)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        ours = backbone.eval()(x)[-1]
        theirs = reference(x)[-1]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------


def test_unreachable_url_names_it_and_the_ways_out():
    url = 'http://127.0.0.1:9/ResNet18_vd_pretrained_from_paddle.pth'
    backbone = MODELS.build(dict(type='ResNetVd', depth=18,
                                 init_cfg=pretrained(url)))
    with pytest.raises(RuntimeError) as err:
        backbone.init_weights()
    message = str(err.value)
    assert url in message
    assert 'model.backbone.init_cfg.checkpoint=PATH' in message
    assert 'model.backbone.init_cfg=None' in message


def test_checkpoint_of_another_family_is_an_error_naming_it(tmp_path):
    rmt = MODELS.build(dict(type='RMT', arch='t'))
    path = tmp_path / 'rmt_t.pth'
    torch.save(dict(state_dict=rmt.state_dict()), path)
    backbone = MODELS.build(dict(type='ResNetVd', depth=18,
                                 init_cfg=pretrained(path)))
    with pytest.raises(ValueError) as err:
        backbone.init_weights()
    message = str(err.value)
    assert str(path) in message and 'ResNetVd' in message
    assert 'stem.0.conv.weight' in message or 'stages.' in message


def test_truncated_checkpoint_is_an_error_naming_it(official, tmp_path):
    path = tmp_path / 'truncated.pth'
    torch.save({k: v for k, v in official['state_dict'].items()}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3])
    backbone = MODELS.build(dict(type='ResNetVd', depth=18,
                                 init_cfg=pretrained(path)))
    with pytest.raises(RuntimeError, match='truncated.pth'):
        backbone.init_weights()


def test_coco_config_without_coco_data_says_what_it_expected(tmp_path):
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'rtdetr_r18vd_coco.py'))
    dataset = cfg.train_dataloader.dataset
    dataset.data_root = str(tmp_path / 'coco') + '/'
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    with pytest.raises(FileNotFoundError) as err:
        DATASETS.build(dataset)
    message = str(err.value)
    assert 'instances_train2017.json' in message
    assert 'raccoon' in message


# ----------------------------------------------------------------------------
# Official RT-DETR COCO checkpoints, as released
# ----------------------------------------------------------------------------


def save_official_release(official, path):
    """The release layout of ``rtdetr_r18vd_dec3_6x_coco_from_paddle.pth``:
    the EMA weights under ``ema.module`` (fp16 in the fixture)."""
    torch.save(dict(ema=dict(module=official['state_dict'], updates=1000,
                             warmups=2000)), path)


def test_official_release_loads_through_load_checkpoint(
        official, tmp_path, log_lines):
    path = tmp_path / 'rtdetr_r18vd_dec3_6x_coco_from_paddle.pth'
    save_official_release(official, path)
    model = build_detector_from_config('rtdetr_r18vd_coco', small=False)
    load_checkpoint(model, str(path), map_location='cpu', strict=True)
    converted = [line for line in log_lines if
                 f'converted {len(official["state_dict"])} official tensors'
                 in line]
    assert len(converted) == 1, log_lines
    assert 'dropped decoder.denoising_class_embed.weight[-1]: padding row' \
        in converted[0]
    model.eval()
    images = official['images_u8'].float() / 255
    samples = []
    for w, h in official['orig_sizes'].tolist():
        samples.append(DetDataSample(metainfo=dict(
            img_shape=(640, 640), batch_input_shape=(640, 640),
            ori_shape=(h, w), scale_factor=(640 / w, 640 / h))))
    with torch.no_grad():
        results = model.predict(images, samples, rescale=True)
    for b, result in enumerate(results):
        torch.testing.assert_close(result.pred_instances.scores,
                                   official['post_scores'][b], atol=1e-4,
                                   rtol=1e-4)


def test_official_release_loads_through_init_detector(official, tmp_path):
    from mmdet.apis import init_detector
    path = tmp_path / 'rtdetr_r18vd_dec3_6x_coco_from_paddle.pth'
    save_official_release(official, path)
    model = init_detector(osp.join(CONFIG_DIR, 'rtdetr_r18vd_coco.py'),
                          str(path), device='cpu')
    expected = official['state_dict']['backbone.conv1.conv1_1.conv.weight']
    torch.testing.assert_close(
        model.backbone.stem[0].conv.weight, expected.float())


def test_finetune_config_starts_from_the_official_checkpoint(
        official, tmp_path):
    """1-class raccoon fine-tuning from the 80-class release: the class
    heads and the denoising label embedding are re-initialised (one log
    line), everything else loads, and training runs."""
    path = tmp_path / 'rtdetr_r18vd_dec3_6x_coco_from_paddle.pth'
    save_official_release(official, path)
    work_dir = tmp_path / 'work'
    done = subprocess.run(
        [sys.executable, 'tools/train.py',
         'configs/rtdetr_r18vd_raccoon_finetune.py', '--work-dir',
         str(work_dir), '--cfg-options', f'load_from={path}',
         'train_cfg.max_epochs=1', 'train_dataloader.batch_size=2',
         'train_dataloader.dataset.indices=6', 'val_dataloader.dataset.'
         'indices=2', 'default_hooks.logger.interval=1'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    # Converted once, by the runner, for the model and its EMA copy.
    assert log.count(f'converted {len(official["state_dict"])} official '
                     f'tensors of {path}') == 1, log[-4000:]
    reinit = [line for line in log.splitlines()
              if 're-initialised the class-dependent tensors' in line]
    assert len(reinit) == 1
    assert 'dn_query_generator.label_embedding.weight' in reinit[0]
    assert 'bbox_head.cls_branches.0.weight' in reinit[0]
    assert 'size mismatch' not in log and 'unexpected key' not in log
    for line in log.splitlines():
        if line.startswith('missing keys in source state_dict:'):
            missing = line.split(':', 1)[1].replace(',', ' ').split()
            assert all(k.startswith(('bbox_head.cls_branches.',
                                     'dn_query_generator.label_embedding.'))
                       for k in missing), missing
    assert 'Epoch(train) [1]' in log
    assert glob.glob(str(work_dir / 'epoch_1.pth'))


# ----------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------


def top_level_configs():
    return sorted(osp.basename(p)
                  for p in glob.glob(osp.join(CONFIG_DIR, 'rtdetr_*.py')))


@pytest.mark.parametrize('name', top_level_configs())
def test_coco_configs_name_public_weights_raccoon_configs_train_offline(
        name):
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    init_cfg = cfg.model.backbone.get('init_cfg')
    pretrained_cfg = init_cfg if isinstance(init_cfg, dict) and (
        init_cfg.get('type') == 'Pretrained') else None
    if name.endswith('_custom.py'):
        # The custom-data template fine-tunes the whole official COCO model.
        assert pretrained_cfg is None, name
        assert cfg.load_from.startswith('https://github.com/lyuwenyu/')
        return
    if 'raccoon' in name:
        assert pretrained_cfg is None, name
        if 'finetune' in name:
            assert cfg.load_from.startswith('https://github.com/lyuwenyu/')
        return
    if 'bhvit' in name:
        assert pretrained_cfg is None, 'no public BHViT/CCRINet weights'
        lr_mults = cfg.optim_wrapper.paramwise_cfg.custom_keys
        assert lr_mults['backbone']['lr_mult'] == 1.0
        return
    assert pretrained_cfg is not None, f'{name} names no pretrained weights'
    checkpoint = pretrained_cfg.checkpoint
    if cfg.model.backbone.type == 'RMT':
        # Published on Baidu Netdisk only: a local path, and the config's
        # text names the share link of the official release.
        assert checkpoint.startswith('checkpoints/RMT-'), checkpoint
        text = '\n'.join(open(f).read() for f in (
            osp.join(CONFIG_DIR, name),
            osp.join(CONFIG_DIR, '_base_', 'models', 'rtdetr_rmt_t.py')))
        assert 'https://pan.baidu.com/s/' in text
    elif cfg.model.backbone.type == 'MobileNetV4':
        assert checkpoint.startswith('timm://mobilenetv4_' +
                                     cfg.model.backbone.arch + '.'), name
    else:
        assert checkpoint.startswith('https://'), name


def test_timm_scheme_downloads_the_named_weights_once_per_name(monkeypatch,
                                                               log_lines):
    """``timm://NAME`` (the MobileNetV4 configs) reads timm's Hugging Face
    file under a cache name of its own, and the weights load completely."""
    import timm
    reference = timm.create_model('mobilenetv4_conv_small').eval()
    calls = []

    def fake_download(url, map_location=None, file_name=None, **kwargs):
        calls.append((url, file_name))
        return reference.state_dict()

    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', fake_download)
    name = 'mobilenetv4_conv_small.e2400_r224_in1k'
    backbone = config_backbone('rtdetr_mnv4_conv_s_bifpn')
    assert backbone.init_cfg.checkpoint == f'timm://{name}'
    backbone.init_weights()
    assert calls == [(f'https://huggingface.co/timm/{name}/resolve/main/'
                      'pytorch_model.bin', f'timm_{name}.bin')]
    assert not any('keep their initialisation' in line for line in log_lines)
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        ours = backbone.eval()(x)
        theirs = reference.forward_intermediates(x, intermediates_only=True)
    torch.testing.assert_close(ours[-2], theirs[-2], atol=1e-4, rtol=1e-4)


def test_demo_runs_on_the_official_release(official, tmp_path):
    path = tmp_path / 'rtdetr_r18vd_dec3_6x_coco_from_paddle.pth'
    save_official_release(official, path)
    out_dir = tmp_path / 'out'
    done = subprocess.run(
        [sys.executable, 'demo/image_demo.py',
         osp.join(RACCOON, 'images', 'raccoon-1.jpg'),
         'configs/rtdetr_r18vd_coco.py', str(path), '--out-dir',
         str(out_dir), '--score-thr', '0.0'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out_dir / 'raccoon-1.jpg').is_file()
    assert 'wrote 1 image(s) with 300 detection(s)' in done.stdout


def test_a_model_whose_own_keys_have_the_official_layout_is_not_converted():
    """The layout is foreign only to a model without such keys: its own
    state dict loads as it is, while the converter finds no mapping for
    it."""
    model = nn.Module()
    model.encoder = nn.Module()
    model.encoder.input_proj = nn.Linear(2, 2)
    weights = model.state_dict()
    assert checkpoint_layout(weights) == 'official'
    assert convert_checkpoint_layout(weights, model) is weights
    with pytest.raises(ValueError, match=r'no mapping for official keys: '
                       r"\['encoder\.input_proj\.weight'"):
        convert_checkpoint_layout(weights)


def test_official_training_checkpoint_loads_its_ema_weights(official,
                                                            tmp_path):
    """An official training checkpoint holds the EMA weights under
    ``ema.module`` beside the raw ``model`` and the schedule state: the EMA
    weights are the ones loaded."""
    path = tmp_path / 'checkpoint0071.pth'
    state = official['state_dict']
    torch.save(dict(ema=dict(module=state, updates=7),
                    model={k: torch.zeros_like(v) for k, v in state.items()},
                    last_epoch=71), path)
    model = build_detector_from_config('rtdetr_r18vd_coco', small=False)
    load_checkpoint(model, str(path), map_location='cpu', strict=True)
    torch.testing.assert_close(
        model.backbone.stem[0].conv.weight,
        state['backbone.conv1.conv1_1.conv.weight'].float())
