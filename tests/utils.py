"""Helpers shared by the tests: build a detector from a config, fake
batches."""
import os.path as osp

import pytest
import torch
from mmengine.structures import InstanceData

from mmdet.structures import DetDataSample
from rtdetr_zoo.apis import load_config as _load_config
from rtdetr_zoo.apis import load_detector

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The official RT-DETR R18-vd weights, inputs and outputs
# (../shared/fixtures/README.md); not in the repo, CI always has it.
OFFICIAL_FIXTURE = osp.join(REPO_ROOT, '..', 'shared', 'fixtures',
                            'rtdetr_r18vd_official.pt')
requires_official_fixture = pytest.mark.skipif(
    not osp.isfile(OFFICIAL_FIXTURE),
    reason=f'official fixture not present at {OFFICIAL_FIXTURE} (it lives '
    'in the shared folder beside the repo, which CI always has)')
# The official RT-DETRv2 R18-vd weights, inputs and outputs of both sampling
# methods (same README); CI has it beside the v1 fixture.
OFFICIAL_V2_FIXTURE = osp.join(REPO_ROOT, '..', 'shared', 'fixtures',
                               'rtdetrv2_r18vd_official.pt')
requires_official_v2_fixture = pytest.mark.skipif(
    not osp.isfile(OFFICIAL_V2_FIXTURE),
    reason=f'official fixture not present at {OFFICIAL_V2_FIXTURE} (it '
    'lives in the shared folder beside the repo, which CI always has)')
CONFIG_DIR = osp.join(REPO_ROOT, 'configs')

# Shrinks the decoder so detector tests stay fast on a CPU; the structure
# (query selection, denoising, refinement) is unchanged.
SMALL_DETECTOR = {
    'model.num_queries': 30,
    'model.dn_cfg.group_cfg.num_dn_queries': 10,
    'model.test_cfg.max_per_img': 30,
}


def config_path(name):
    """Absolute path of ``configs/<name>`` (``.py`` optional)."""
    name = name if name.endswith('.py') else name + '.py'
    return osp.join(CONFIG_DIR, name)


def load_config(path, **cfg_options):
    """The config at ``path`` (absolute, or a name under ``configs/``) with
    ``cfg_options`` merged."""
    return _load_config(path if osp.isabs(path) else config_path(path),
                        cfg_options)


def build_detector_from_config(path, small=True, **cfg_options):
    """The detector of a config (absolute path or name under ``configs/``),
    built by ``rtdetr_zoo.apis.load_detector`` with the fast overrides by
    default, initialised by ``init_weights()`` and in training mode."""
    options = dict(SMALL_DETECTOR) if small else {}
    options.update(cfg_options)
    model = load_detector(path if osp.isabs(path) else config_path(path),
                          cfg_options=options)
    model.init_weights()
    return model.train()


def make_batch(model, sizes=((96, 128), (112, 80)), num_gts=(2, 1), seed=0):
    """A preprocessed training batch of random images of different sizes.

    Returns the ``(inputs, data_samples)`` produced by the model's data
    pre-processor (padding, normalisation), with random ground truth boxes.
    """
    gen = torch.Generator().manual_seed(seed)
    num_classes = model.bbox_head.num_classes
    inputs, samples = [], []
    for (h, w), n in zip(sizes, num_gts):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen,
                                    dtype=torch.uint8))
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.6
        wh = (torch.rand(n, 2, generator=gen) * 0.3 + 0.1) * torch.tensor(
            [w, h])
        sample = DetDataSample(metainfo=dict(
            img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1),
            labels=torch.randint(0, num_classes, (n, ), generator=gen))
        samples.append(sample)
    data = model.data_preprocessor(
        dict(inputs=inputs, data_samples=samples), training=False)
    return data['inputs'], data['data_samples']


def run_loss_and_predict(model, sizes=((96, 128), (112, 80)),
                         num_gts=(2, 1)):
    """One loss forward/backward and one predict on images of ``sizes``.

    Returns:
        tuple[dict, list]: the losses (tensors, after backward) and the
        predicted data samples.
    """
    model.train()
    inputs, samples = make_batch(model, sizes, num_gts)
    losses = model.loss(inputs, samples)
    total = sum(v.sum() for k, v in losses.items() if 'loss' in k)
    total.backward()
    model.eval()
    inputs, samples = make_batch(model, sizes, num_gts)
    with torch.no_grad():
        results = model.predict(inputs, samples)
    return losses, results
