"""DEIM's dense one-to-one augmentations (Huang et al., CVPR 2025): the
mosaic (``DEIMMosaic``, ``SkipAfterMosaic``) and the batch mixup
(``BatchRollMixup``), against the official code's arithmetic.

The reference values were computed by the official DEIM code (snapshot
a9aa4ad) on the same synthetic inputs with the same seeds, in a scratch
folder with torchvision 0.27.1 (the pinned version):
``PYTHONPATH=<stubs>:<DEIM> python official_mosaic.py`` ran
``engine.data.transforms.mosaic.Mosaic(output_size=320, rotation_range=10,
translation_range=[0.1, 0.1], scaling_range=[0.5, 1.5], probability=1.0,
fill_value=0, use_cache=False)`` on :func:`synthetic_item` images (PIL)
after ``random.seed(s); torch.manual_seed(s); random.random()`` (the
official Compose's ``mosaic_prob`` draw), and ``official_mixup.py`` ran
``BatchImageCollateFunction(mixup_prob=0.5, mixup_epochs=[4, 64])
.apply_mixup`` at epoch 10 after ``random.seed(s)``.
"""
import copy
import random

import numpy as np
import pytest
import torch
from mmdet.registry import TRANSFORMS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.structures import InstanceData

from rtdetr_zoo.datasets import BatchRollMixup, DEIMMosaic, SkipAfterMosaic

from .utils import load_config

SIZES = [(300, 400), (480, 360), (200, 200), (250, 500), (350, 260)]


def synthetic_item(index):
    """Image ``index`` of a 5-image dataset of the sizes ``SIZES`` (h, w):
    random pixels and ``index % 3 + 1`` boxes labelled ``10 * index + k``,
    as loaded by mmdet's ``LoadAnnotations``."""
    height, width = SIZES[index]
    gen = torch.Generator().manual_seed(index)
    img = (torch.rand(height, width, 3, generator=gen) * 255).to(
        torch.uint8).numpy()
    count = index % 3 + 1
    size = torch.tensor([width, height])
    xy = torch.rand(count, 2, generator=gen) * size * 0.6
    wh = (torch.rand(count, 2, generator=gen) * 0.3 + 0.1) * size
    return dict(img=img, img_shape=(height, width),
                gt_bboxes=HorizontalBoxes(torch.cat([xy, xy + wh], 1).round()),
                gt_bboxes_labels=np.arange(count) + 10 * index,
                gt_ignore_flags=np.zeros(count, bool))


# Official outputs per seed: canvas (w, h), labels, boxes (xyxy px).
OFFICIAL_MOSAICS = {
    0: ((1280, 852), [0, 30, 20, 21, 22, 10, 11], [
        [368.788, 102.617, 436.186, 168.773],
        [732.184, 144.023, 839.855, 200.793],
        [410.702, 371.462, 484.619, 445.380],
        [340.980, 413.020, 410.796, 443.448],
        [335.951, 434.276, 395.678, 482.894],
        [772.050, 453.995, 836.742, 518.586],
        [779.435, 516.286, 815.441, 555.037]]),
    1: ((1280, 860), [0, 40, 41, 30, 10, 11], [
        [0.0, 0.0, 98.642, 0.0],
        [788.474, 0.0, 940.640, 154.477],
        [729.372, 75.340, 880.327, 217.822],
        [0.0, 457.904, 41.907, 586.962],
        [677.884, 615.026, 814.903, 751.867],
        [685.697, 737.448, 762.443, 819.060]]),
    2: ((852, 860), [0, 40, 41, 0, 0], [
        [102.499, 46.577, 210.273, 152.513],
        [556.513, 105.579, 670.644, 236.748],
        [512.413, 181.654, 626.785, 288.947],
        [85.727, 465.260, 193.501, 571.196],
        [500.515, 481.875, 608.289, 587.811]]),
}


@pytest.mark.parametrize('seed', sorted(OFFICIAL_MOSAICS))
def test_mosaic_boxes_are_the_official_ones(seed):
    mosaic = DEIMMosaic(img_scale=320, rotation_range=10,
                        translation_range=(0.1, 0.1),
                        scaling_range=(0.5, 1.5), fill_value=0, prob=1.0)
    random.seed(seed)
    torch.manual_seed(seed)
    indexes = mosaic.get_indexes(SIZES)
    assert len(indexes) == 3
    results = synthetic_item(0)
    results['mix_results'] = [synthetic_item(i) for i in indexes]
    results = mosaic.transform(results)
    size, labels, boxes = OFFICIAL_MOSAICS[seed]
    assert results['mosaic'] is True
    assert results['img'].shape == (size[1], size[0], 3)
    assert results['img_shape'] == (size[1], size[0])
    assert results['gt_bboxes_labels'].tolist() == labels
    assert results['gt_ignore_flags'].shape == (len(labels), )
    torch.testing.assert_close(results['gt_bboxes'].tensor,
                               torch.tensor(boxes), atol=1e-3, rtol=0)
    assert 'mix_results' not in results


def test_mosaic_probability_and_layout():
    """Without partners (``prob`` failed) the sample is unchanged; the
    canvas before the affine is the four resized images at the top left of
    their quadrants (identity affine)."""
    mosaic = DEIMMosaic(prob=0.0)
    random.seed(0)
    assert mosaic.get_indexes(SIZES) == []
    item = synthetic_item(1)
    out = mosaic.transform(dict(item, mix_results=[]))
    assert out['mosaic'] is False and out['img'] is item['img']

    still = DEIMMosaic(img_scale=100, rotation_range=0,
                       translation_range=(0, 0), scaling_range=(1, 1),
                       prob=1.0)
    parts = [synthetic_item(i) for i in (0, 2, 3, 4)]
    out = still.transform(dict(parts[0], mix_results=parts[1:]))
    # Shorter side 100: (300, 400) -> (100, 133), (200, 200) -> (100, 100),
    # (250, 500) -> (100, 200), (350, 260) -> (134, 100).
    assert out['img'].shape == (2 * 134, 2 * 200, 3)
    boxes = out['gt_bboxes'].tensor
    expected = torch.cat([
        p['gt_bboxes'].tensor * torch.tensor([w / p['img_shape'][1],
                                              h / p['img_shape'][0]] * 2)
        + torch.tensor([x0, y0] * 2)
        for p, (h, w), (x0, y0) in zip(
            parts, [(100, 133), (100, 100), (100, 200), (134, 100)],
            [(0, 0), (200, 0), (0, 134), (200, 134)])])
    torch.testing.assert_close(boxes, expected.clamp(min=0), atol=1e-3,
                               rtol=0)
    assert (out['img'][100:134, :133] == 0).all()  # below image 0


def test_mosaic_bad_arguments():
    with pytest.raises(ValueError, match='prob must be in'):
        DEIMMosaic(prob=1.5)
    with pytest.raises(ValueError, match='img_scale must be positive'):
        DEIMMosaic(img_scale=0)
    with pytest.raises(ValueError, match='needs 3 mix_results, got 1'):
        DEIMMosaic().transform(dict(synthetic_item(0),
                                    mix_results=[synthetic_item(1)]))


def test_skip_after_mosaic():
    """The zoom-out and IoU crop run on a sample exactly when it is not a
    mosaic."""
    skip = SkipAfterMosaic(transforms=[
        dict(type='Expand', mean=[0, 0, 0], to_rgb=False,
             ratio_range=(2, 2), prob=1.0)])
    item = synthetic_item(2)
    assert skip.transform(dict(item, mosaic=True))['img'].shape == \
        (200, 200, 3)
    assert skip.transform(dict(item, mosaic=False))['img'].shape == \
        (400, 400, 3)
    assert skip.transform(copy.deepcopy(item))['img'].shape == (400, 400, 3)
    assert isinstance(TRANSFORMS.build(dict(
        type='SkipAfterMosaic', transforms=[])), SkipAfterMosaic)


def _mixup_batch():
    gen = torch.Generator().manual_seed(100)
    images = torch.rand(3, 3, 4, 5, generator=gen)
    samples = []
    for i, count in enumerate((2, 1, 3)):
        sample = DetDataSample()
        sample.gt_instances = InstanceData(
            bboxes=torch.rand(count, 4, generator=gen),
            labels=torch.arange(count) + 10 * i)
        samples.append(sample)
    return images, samples


# Official per seed: mixed or not, and lam (the weight of the image itself).
OFFICIAL_MIXUPS = {0: None, 1: 0.534743, 2: None, 3: 0.504423}


@pytest.mark.parametrize('seed', sorted(OFFICIAL_MIXUPS))
def test_batch_mixup_is_the_official_arithmetic(seed):
    images, samples = _mixup_batch()
    own = [s.gt_instances.clone() for s in samples]
    random.seed(seed)
    mixed, out = BatchRollMixup(prob=0.5, lambda_range=(0.45, 0.55))(
        images.clone(), samples)
    lam = OFFICIAL_MIXUPS[seed]
    if lam is None:
        assert torch.equal(mixed, images)
        assert [s.gt_instances.labels.tolist() for s in out] == \
            [[0, 1], [10], [20, 21, 22]]
        return
    expected = images.roll(shifts=1, dims=0).mul_(1.0 - lam).add_(
        images.mul(lam))
    assert torch.equal(mixed, expected)
    assert [s.gt_instances.labels.tolist() for s in out] == \
        [[0, 1, 20, 21, 22], [10, 0, 1], [20, 21, 22, 10]]
    for i, sample in enumerate(out):
        torch.testing.assert_close(
            sample.gt_instances.bboxes,
            torch.cat([own[i].bboxes, own[i - 1].bboxes]), rtol=0, atol=0)


def test_batch_mixup_probability_and_range():
    images, samples = _mixup_batch()
    same, _ = BatchRollMixup(prob=0.0)(images.clone(), samples)
    assert torch.equal(same, images)
    images, samples = _mixup_batch()
    half, _ = BatchRollMixup(prob=1.0, lambda_range=(0.5, 0.5))(
        images.clone(), samples)
    torch.testing.assert_close(half, (images + images.roll(1, 0)) / 2)
    with pytest.raises(ValueError, match='prob must be in'):
        BatchRollMixup(prob=-1)
    with pytest.raises(ValueError, match='lambda_range'):
        BatchRollMixup(lambda_range=(0.6, 0.4))


def test_mosaic_dataset_and_loader_on_raccoon():
    """The raccoon DEIM twin's ``MultiImageMixDataset`` (raccoon images
    loaded, mosaic forced) yields packed 320x320 training samples, also
    through mmdet's ``AspectRatioBatchSampler`` (the COCO configs')."""
    init_default_scope('mmdet')
    cfg = load_config('deim_rtdetrv2_r18vd_raccoon')
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    loader_cfg.update(num_workers=0, persistent_workers=False, batch_size=4,
                      batch_sampler=dict(type='AspectRatioBatchSampler'))
    loader_cfg.dataset.pipeline[0].prob = 1.0
    random.seed(0)
    torch.manual_seed(0)
    batch = next(iter(Runner.build_dataloader(loader_cfg, seed=0)))
    assert [tuple(x.shape) for x in batch['inputs']] == [(3, 320, 320)] * 4
    # A mosaic of four raccoon images has at least four boxes (one per
    # image) unless the affine moved some out.
    counts = [len(s.gt_instances) for s in batch['data_samples']]
    assert sum(counts) >= 8
    for sample in batch['data_samples']:
        boxes = sample.gt_instances.bboxes.tensor
        assert ((boxes[:, 2:] - boxes[:, :2]) >= 1).all()
        assert (boxes >= 0).all() and (boxes <= 320).all()
