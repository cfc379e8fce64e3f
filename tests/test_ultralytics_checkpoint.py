"""Ultralytics RT-DETR checkpoints, offline and without ultralytics.

The synthetic checkpoints have the exact published layout of Ultralytics'
``rtdetr-l`` / ``rtdetr-x``: ``tests/data/ultralytics_rtdetr_{l,x}_keys.json``
lists every module (path and class) and tensor (name, shape, parameter or
buffer) of ``RTDETRDetectionModel('rtdetr-{l,x}.yaml')`` (ultralytics
8.4.190). They are saved as Ultralytics saves them (``strip_optimizer``: the
fp16 model under ``'model'``; the trainer's ``save_model``: under ``'ema'``)
with stand-in module classes carrying the real ultralytics names, registered
in fake ``ultralytics.*`` modules only while ``torch.save`` pickles them, so
the reader sees the real globals and works without them.

The outputs of a converted random-weight Ultralytics model equal
Ultralytics' own (docs/model_zoo.md, "Ultralytics checkpoints"; measured
with ultralytics installed in a scratch environment, not here).
"""
import contextlib
import importlib
import json
import logging
import math
import os
import os.path as osp
import re
import runpy
import shutil
import sys
import types

import pytest
import torch
from mmengine.logging import MMLogger
from torch import nn

from mmdet.registry import MODELS
from rtdetr_zoo.apis import load_detector, load_weights
from rtdetr_zoo.engine import (extract_state_dict, read_checkpoint,
                               read_ultralytics_checkpoint)
from rtdetr_zoo.engine.official_converter import (
    BN_EPS, ULTRALYTICS_BN_EPS, convert_checkpoint_layout,
    convert_ultralytics_state_dict, is_ultralytics_layout)

from .utils import REPO_ROOT, SMALL_DETECTOR, config_path, make_batch

DATA_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'data')
CONVERTER = osp.join(REPO_ROOT, 'tools', 'model_converters',
                     'ultralytics_to_mmdet.py')
CLASS_NAMES = {i: f'class_{i}' for i in range(80)}


def ours_from(key, tensors):
    """Our fp32 value of Ultralytics' tensor ``key``: BatchNorm variances
    shifted by the difference of the epsilons (1e-3 there, 1e-5 here), so
    that ``var + eps`` is unchanged."""
    value = tensors[key].float()
    if key.endswith('running_var'):
        value = value + (ULTRALYTICS_BN_EPS - BN_EPS)
    return value


def published_layout(name):
    """The modules and tensors of Ultralytics' ``name`` (``'l'``, ``'x'``)."""
    with open(osp.join(DATA_DIR, f'ultralytics_rtdetr_{name}_keys.json')) as f:
        return json.load(f)


@contextlib.contextmanager
def ultralytics_classes(qualified_names):
    """``{qualified name: class}``: torch's own classes for ``torch.*``
    names, for the others ``nn.Module`` subclasses with that ``__module__``
    and ``__qualname__``, importable by name (fake modules in
    ``sys.modules``) until the block ends."""
    classes, fake_modules = {}, {}
    for qualified in sorted(set(qualified_names)):
        module_name, _, name = qualified.rpartition('.')
        if qualified.startswith('torch.'):
            classes[qualified] = getattr(importlib.import_module(module_name),
                                         name)
            continue
        base = (types.SimpleNamespace if name == 'IterableSimpleNamespace'
                else nn.Module)
        cls = type(name, (base, ), dict(__module__=module_name,
                                        __qualname__=name))
        parts = module_name.split('.')
        for i in range(1, len(parts) + 1):
            fake_modules.setdefault('.'.join(parts[:i]), types.ModuleType(
                '.'.join(parts[:i])))
        setattr(fake_modules[module_name], name, cls)
        classes[qualified] = cls
    assert not set(fake_modules) & set(sys.modules)
    sys.modules.update(fake_modules)
    try:
        yield classes
    finally:
        for name in fake_modules:
            del sys.modules[name]


def module_tree(layout, classes, seed=0, bn_eps=ULTRALYTICS_BN_EPS):
    """The pickled model of ``layout``: its module tree with random fp16
    tensors (positive BN variances; ``num_batches_tracked``: int64) as
    parameters or buffers; the BatchNorms have Ultralytics' ``eps``.

    Returns:
        tuple[nn.Module, dict]: the root, and its tensors by name.
    """
    modules = {}
    for path, qualified in layout['modules']:
        cls = classes[qualified]
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        modules[path] = module
        if qualified == 'torch.nn.modules.batchnorm.BatchNorm2d':
            module.eps = bn_eps
        if path:
            parent, _, child = path.rpartition('.')
            modules[parent]._modules[child] = module
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, shape, kind in layout['tensors']:
        owner, _, name = key.rpartition('.')
        if name == 'num_batches_tracked':
            value = torch.tensor(7)
        elif name == 'running_var':
            value = (torch.rand(shape, generator=gen) + 0.5).half()
        else:
            value = (torch.randn(shape, generator=gen) * 0.05).half()
        if kind == 'parameter':
            modules[owner]._parameters[name] = nn.Parameter(
                value, requires_grad=False)
        else:
            modules[owner]._buffers[name] = value
        tensors[key] = value
    root = modules['']
    root.names = dict(CLASS_NAMES)
    root.stride = torch.tensor([32.0])  # a plain fp32 tensor attribute
    return root, tensors


def save_ultralytics_checkpoint(path, layout, under='model', extra=(),
                                bn_eps=ULTRALYTICS_BN_EPS):
    """``torch.save`` a checkpoint as ``strip_optimizer`` writes it (the
    model under ``'model'``) or as the trainer does (``under='ema'``, the
    args an ``IterableSimpleNamespace``); ``extra``: more ``(qualified
    class, attribute, value factory)`` put on the model.

    Returns:
        dict: the model's tensors by Ultralytics name.
    """
    names = [qualified for _, qualified in layout['modules']] + [
        'ultralytics.utils.IterableSimpleNamespace']
    with ultralytics_classes(names) as classes:
        root, tensors = module_tree(layout, classes, bn_eps=bn_eps)
        root.args = classes['ultralytics.utils.IterableSimpleNamespace'](
            imgsz=640, model='rtdetr-l.yaml')
        for attribute, value in extra:
            setattr(root, attribute, value)
        checkpoint = dict(
            date='2024-05-01T12:00:00', version='8.4.190',
            license='AGPL-3.0', epoch=-1, best_fitness=None, model=None,
            ema=None, updates=None, optimizer=None,
            train_args=dict(model='rtdetr-l.yaml', imgsz=640))
        checkpoint[under] = root
        torch.save(checkpoint, path)
    assert not any(name.startswith('ultralytics') for name in sys.modules)
    return tensors


@pytest.fixture(scope='module')
def rtdetr_l(tmp_path_factory):
    """A synthetic ``rtdetr-l.pt``, its tensors, and ``configs/rtdetr_hgnetv2
    _l_coco.py``'s detector loaded from it by ``load_detector`` (strict)."""
    path = str(tmp_path_factory.mktemp('ultralytics') / 'rtdetr-l.pt')
    tensors = save_ultralytics_checkpoint(path, published_layout('l'))
    model = load_detector(config_path('rtdetr_hgnetv2_l_coco'), path)
    return path, tensors, model


# Ultralytics' name -> ours, from rtdetr-l.yaml: the stem (0), stage 0's
# block (1), per stage a DWConv then HGBlocks (2-3, 4-7, 8-9), the encoder
# as layers 10-27 (input_proj.2, AIFI, lateral conv, input_proj.1, RepC3,
# ...), the decoder (28).
L_PAIRS = {
    'model.0.stem2a.conv.weight': 'backbone.stem.stem2a.conv.weight',
    'model.1.m.5.bn.running_var': 'backbone.stages.0.0.convs.5.bn.running_var',
    'model.2.conv.weight': 'backbone.stages.1.0.conv.weight',
    'model.3.sc.bn.weight': 'backbone.stages.1.1.squeeze.bn.weight',
    'model.7.m.3.conv2.conv.weight':
    'backbone.stages.2.3.convs.3.conv2.conv.weight',
    'model.9.ec.bn.bias': 'backbone.stages.3.1.excite.bn.bias',
    'model.10.conv.weight': 'neck.input_proj.2.conv.weight',
    'model.11.ma.in_proj_weight':
    'neck.encoder.0.encoder.layers.0.self_attn.attn.in_proj_weight',
    'model.11.fc2.weight':
    'neck.encoder.0.encoder.layers.0.ffn.layers.1.weight',
    'model.11.norm2.bias': 'neck.encoder.0.encoder.layers.0.norms.1.bias',
    'model.12.bn.running_mean': 'neck.lateral_convs.0.bn.running_mean',
    'model.16.m.2.conv1.conv.weight':
    'neck.fpn_blocks.0.bottlenecks.2.conv1.conv.weight',
    'model.19.conv.weight': 'neck.input_proj.0.conv.weight',
    'model.25.conv.weight': 'neck.downsample_convs.1.conv.weight',
    'model.27.cv2.bn.weight': 'neck.pan_blocks.1.conv2.bn.weight',
    'model.28.input_proj.1.1.running_var': 'input_proj.1.bn.running_var',
    'model.28.decoder.layers.5.cross_attn.sampling_offsets.weight':
    'decoder.layers.5.cross_attn.sampling_offsets.weight',
    'model.28.decoder.layers.0.norm3.weight':
    'decoder.layers.0.norms.2.weight',
    'model.28.query_pos_head.layers.1.bias':
    'decoder.query_pos_head.layers.1.bias',
    'model.28.enc_output.1.weight': 'memory_trans_norm.weight',
    'model.28.enc_score_head.bias': 'bbox_head.cls_branches.6.bias',
    'model.28.enc_bbox_head.layers.2.weight':
    'bbox_head.reg_branches.6.4.weight',
    'model.28.dec_bbox_head.2.layers.1.weight':
    'bbox_head.reg_branches.2.2.weight',
    'model.28.dec_score_head.5.weight': 'bbox_head.cls_branches.5.weight',
    'model.28.denoising_class_embed.weight':
    'dn_query_generator.label_embedding.weight',
}


def test_published_layouts_are_the_rt_detr_l_and_x_models():
    for name, num_tensors, decoder in (('l', 941, 28), ('x', 1241, 32)):
        layout = published_layout(name)
        keys = [key for key, _, _ in layout['tensors']]
        assert len(keys) == num_tensors
        assert is_ultralytics_layout(keys)
        assert dict(layout['modules'])[f'model.{decoder}'] == \
            'ultralytics.nn.modules.head.RTDETRDecoder'


def test_rtdetr_l_loads_every_tensor_where_it_belongs(rtdetr_l):
    """``load_detector`` (strict: no missing or unexpected key) reads the
    fp16 file through ``read_checkpoint``; each tensor is its fp32 copy."""
    _, tensors, model = rtdetr_l
    own = model.state_dict()
    assert len(own) == len(tensors)
    for theirs, ours in L_PAIRS.items():
        assert own[ours].dtype == torch.float32
        assert torch.equal(own[ours], ours_from(theirs, tensors)), theirs
    assert torch.equal(own['backbone.stages.0.0.convs.0.bn.num_batches_'
                           'tracked'], torch.tensor(7))
    # The class names come with the checkpoint.
    assert model.dataset_meta['classes'] == tuple(CLASS_NAMES.values())


def test_read_checkpoint_gives_the_flat_fp32_ultralytics_state_dict(rtdetr_l):
    path, tensors, _ = rtdetr_l
    checkpoint = read_checkpoint(path)
    weights = extract_state_dict(checkpoint, source=path)
    assert list(weights) == list(tensors)
    assert all(torch.equal(weights[k], v.float() if v.is_floating_point()
                           else v) for k, v in tensors.items())
    assert checkpoint['meta']['ultralytics'] == dict(
        model_class='ultralytics.nn.tasks.RTDETRDetectionModel',
        from_ema=False, bn_eps=[ULTRALYTICS_BN_EPS], version='8.4.190',
        date='2024-05-01T12:00:00', epoch=-1)
    converted, dropped = convert_ultralytics_state_dict(weights)
    assert len(converted) == len(weights) and dropped == {}


def test_converter_tool_writes_a_loadable_checkpoint(rtdetr_l, tmp_path,
                                                     monkeypatch):
    path, tensors, model = rtdetr_l
    dst = tmp_path / 'out' / 'rtdetr_hgnetv2_l_ultralytics.pth'
    # As Python runs a script: its own folder (the shared converter
    # command line) on sys.path.
    monkeypatch.syspath_prepend(osp.dirname(CONVERTER))
    monkeypatch.setattr(sys, 'argv', [CONVERTER, path, str(dst)])
    runpy.run_path(CONVERTER, run_name='__main__')
    written = read_checkpoint(str(dst))
    assert written['meta']['converted_from'] == path
    assert written['meta']['ultralytics']['version'] == '8.4.190'
    assert set(written['state_dict']) == set(model.state_dict())
    load_weights(model, written['state_dict'], strict=True)
    for theirs, ours in L_PAIRS.items():
        assert torch.equal(written['state_dict'][ours],
                           ours_from(theirs, tensors))

    monkeypatch.setattr(sys, 'argv', [CONVERTER, str(tmp_path / 'no.pt'),
                                      str(dst)])
    with pytest.raises(SystemExit, match='checkpoint file not found'):
        runpy.run_path(CONVERTER, run_name='__main__')

    # A file of another layout is named, not half converted.
    monkeypatch.setattr(sys, 'argv', [CONVERTER, str(dst),
                                      str(tmp_path / 'again.pth')])
    with pytest.raises(SystemExit, match=rf'{re.escape(str(dst))} is not an '
                       r'Ultralytics RT-DETR checkpoint \(it has neither'):
        runpy.run_path(CONVERTER, run_name='__main__')
    assert not (tmp_path / 'again.pth').exists()


def test_runner_load_from_reads_it(rtdetr_l, tmp_path):
    """``load_from`` / ``tools/test.py``: the config's runner
    (RTDETRRunner) loads the file into the model and its EMA copy."""
    from mmengine.config import Config
    from mmengine.registry import RUNNERS
    path, tensors, _ = rtdetr_l
    cfg = Config.fromfile(config_path('rtdetr_hgnetv2_l_coco'))
    cfg.work_dir = str(tmp_path)
    cfg.model.backbone.init_cfg = None
    runner = RUNNERS.build(cfg)
    runner.call_hook('before_run')  # the EMA hook makes its model here
    runner.load_checkpoint(path, strict=True)
    ema = next(h for h in runner.hooks if type(h).__name__ == 'EMAHook')
    for model in (runner.model, ema.ema_model.module):
        own = model.state_dict()
        for theirs, ours in L_PAIRS.items():
            assert torch.equal(own[ours], ours_from(theirs, tensors)), theirs


def test_finetuning_to_other_classes_reinitialises_the_class_heads(rtdetr_l):
    """The conversion on load (``load_from``, the runner) leaves out the
    class-dependent tensors of another number of classes."""
    path, tensors, model = rtdetr_l
    weights = extract_state_dict(read_checkpoint(path))
    weights = {k: (v[:3] if k.startswith(('model.28.dec_score_head.',
                                          'model.28.enc_score_head.',
                                          'model.28.denoising_class_'))
                   else v) for k, v in weights.items()}
    converted = convert_checkpoint_layout(weights, model)
    assert not any(k.startswith(('bbox_head.cls_branches.',
                                 'dn_query_generator.'))
                   for k in converted)
    assert len(converted) == len(weights) - 2 * 7 - 1


# ----------------------------------------------------------------------------
# The reader: what it resolves, what it refuses
# ----------------------------------------------------------------------------

TINY_LAYOUT = dict(
    modules=[['', 'ultralytics.nn.tasks.RTDETRDetectionModel'],
             ['model', 'torch.nn.modules.container.Sequential'],
             ['model.0', 'ultralytics.nn.modules.conv.Conv'],
             ['model.0.conv', 'torch.nn.modules.conv.Conv2d'],
             ['model.0.bn', 'torch.nn.modules.batchnorm.BatchNorm2d'],
             ['model.0.act', 'torch.nn.modules.activation.SiLU']],
    tensors=[['model.0.conv.weight', [4, 3, 1, 1], 'parameter'],
             ['model.0.bn.weight', [4], 'parameter'],
             ['model.0.bn.running_mean', [4], 'buffer'],
             ['model.0.bn.num_batches_tracked', [], 'buffer']])


def test_trainer_checkpoint_reads_the_ema_model(tmp_path):
    """``last.pt`` as the trainer writes it: the model under ``'ema'``, args
    as an ``IterableSimpleNamespace``; a non-persistent buffer is not part
    of the state dict."""
    path = tmp_path / 'last.pt'
    cache = nn.Module()
    cache.register_buffer('anchors', torch.ones(3), persistent=False)
    tensors = save_ultralytics_checkpoint(path, TINY_LAYOUT, under='ema',
                                          extra=[('cache', cache)])
    checkpoint = read_ultralytics_checkpoint(path)
    assert checkpoint['meta']['ultralytics']['from_ema'] is True
    assert list(checkpoint['model']) == list(tensors)
    assert checkpoint['model']['model.0.conv.weight'].dtype == torch.float32
    assert torch.equal(checkpoint['model']['model.0.bn.running_mean'],
                       tensors['model.0.bn.running_mean'].float())


def test_other_batchnorm_eps_is_reported(tmp_path):
    path = tmp_path / 'rtdetr-l.pt'
    save_ultralytics_checkpoint(path, TINY_LAYOUT, bn_eps=1e-5)
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        checkpoint = read_ultralytics_checkpoint(str(path))
    finally:
        logger.removeHandler(handler)
    assert checkpoint['meta']['ultralytics']['bn_eps'] == [1e-5]
    assert any('BatchNorm eps [1e-05]' in r and str(path) in r
               for r in records), records


class Gadget:
    """A class of no allowed module."""


class Payload:
    """Unpickles by calling ``call(*args)``."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


@pytest.mark.parametrize('make_payload, refused', [
    (lambda marker: Payload(os.system, f'touch {marker}'),
     f'{os.system.__module__}.system'),
    (lambda marker: Payload(eval, f'open({str(marker)!r}, "w")'),
     'builtins.eval'),
    (lambda marker: Gadget(), f'{__name__}.Gadget'),
])
def test_unexpected_global_is_refused_and_named(tmp_path, make_payload,
                                                refused):
    path, marker = tmp_path / 'rtdetr-l.pt', tmp_path / 'pwned'
    save_ultralytics_checkpoint(
        path, TINY_LAYOUT, extra=[('payload', make_payload(marker))])
    for read in (read_ultralytics_checkpoint, read_checkpoint):
        with pytest.raises(RuntimeError, match=f'refused global {refused}') \
                as err:
            read(str(path))
        assert str(path) in str(err.value)
    with pytest.raises(RuntimeError, match=f'refused global {refused}'):
        load_detector(config_path('rtdetr_r18vd_raccoon'), str(path))
    assert not marker.exists()


def test_not_a_zip_archive_is_named(tmp_path):
    path = tmp_path / 'rtdetr-l.pt'
    path.write_bytes(b'PK\x03\x04 truncated')
    with pytest.raises(RuntimeError, match='not a zip archive') as err:
        read_ultralytics_checkpoint(str(path))
    assert str(path) in str(err.value)


def test_other_layout_is_a_clear_error():
    weights = {'model.0.cv1.conv.weight': torch.zeros(1),
               'model.1.dec_score_head.0.weight': torch.zeros(1)}
    with pytest.raises(KeyError, match='not the Ultralytics RT-DETR layout'):
        convert_ultralytics_state_dict(weights)


# ----------------------------------------------------------------------------
# HGNetv2-X and RT-DETR-X
# ----------------------------------------------------------------------------


def test_hgnetv2_x_on_the_backbone_contract():
    """The X arch (rtdetr-x.yaml's backbone, layers 0-13): stage widths
    128/512/1024/2048 at strides 4-32, ceil output sizes, as many backbone
    parameters as Ultralytics' (BN counts not counted), frozen stages."""
    size = (97, 131)
    backbone = MODELS.build(dict(type='HGNetv2', arch='X',
                                 out_indices=(0, 1, 2, 3), frozen_stages=2))
    assert backbone.out_channels == [128, 512, 1024, 2048]
    assert backbone.out_strides == [4, 8, 16, 32]
    with torch.no_grad():
        outs = backbone.eval()(torch.rand(1, 3, *size))
    for out, channels, stride in zip(outs, backbone.out_channels,
                                     backbone.out_strides):
        assert out.shape == (1, channels, math.ceil(size[0] / stride),
                             math.ceil(size[1] / stride))
    ultralytics = sum(
        math.prod(shape) for key, shape, _ in published_layout('x')['tensors']
        if int(key.split('.')[1]) <= 13 and 'num_batches' not in key)
    own = {k: v for k, v in backbone.state_dict().items()
           if 'num_batches' not in k}
    assert sum(v.numel() for v in own.values()) == ultralytics
    for name, param in backbone.named_parameters():
        assert param.requires_grad == name.startswith(
            ('stages.2.', 'stages.3.')), name


def test_rtdetr_x_config_loads_ultralytics_x_and_predicts(tmp_path):
    """``configs/rtdetr_hgnetv2_x_coco.py`` loads a synthetic ``rtdetr-x.pt``
    with every key (strict) and predicts at a small size (with fewer
    queries, which have no weights)."""
    path = str(tmp_path / 'rtdetr-x.pt')
    tensors = save_ultralytics_checkpoint(path, published_layout('x'))
    model = load_detector(config_path('rtdetr_hgnetv2_x_coco'), path,
                          cfg_options=SMALL_DETECTOR)
    own = model.state_dict()
    for theirs, ours in {
            'model.4.m.0.conv.weight':
            'backbone.stages.1.2.convs.0.conv.weight',
            'model.10.ec.conv.weight':
            'backbone.stages.2.5.excite.conv.weight',
            'model.15.fc1.weight':
            'neck.encoder.0.encoder.layers.0.ffn.layers.0.0.weight',
            'model.32.input_proj.0.0.weight': 'input_proj.0.conv.weight',
            'model.32.input_proj.2.1.running_var':
            'input_proj.2.bn.running_var',
    }.items():
        assert torch.equal(own[ours], ours_from(theirs, tensors)), theirs
    assert own['input_proj.0.conv.weight'].shape == (256, 384, 1, 1)
    inputs, samples = make_batch(model, sizes=((64, 96), ), num_gts=(1, ))
    with torch.no_grad():
        result = model.predict(inputs, samples)[0].pred_instances
    num_queries = SMALL_DETECTOR['model.test_cfg.max_per_img']
    assert result.bboxes.shape == (num_queries, 4)
    assert torch.isfinite(result.bboxes).all()
    assert ((result.scores >= 0) & (result.scores <= 1)).all()


def test_release_url_is_downloaded_then_read_without_ultralytics(
        rtdetr_l, tmp_path, monkeypatch):
    """``read_checkpoint(URL)`` of an Ultralytics release: the download
    (served here from the synthetic file) lands in torch hub's cache and is
    read by the restricted reader, as a local file is."""
    path, tensors, _ = rtdetr_l
    url = ('https://github.com/ultralytics/assets/releases/download/v8.4.0/'
           'rtdetr-l.pt')
    downloads = []

    def download(src, dst, progress=True):
        downloads.append(src)
        shutil.copyfile(path, dst)

    monkeypatch.setattr(torch.hub, 'download_url_to_file', download)
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    weights = extract_state_dict(read_checkpoint(url), source=url)
    assert downloads == [url]
    assert list(weights) == list(tensors)
    assert (tmp_path / 'hub' / 'checkpoints' / 'rtdetr-l.pt').is_file()
