"""The training loss of RT-DETR-R18vd on a fixed batch with fixed weights and
fixed denoising noise, stored before the CPU speed work (docs/performance.md)
so that every optimisation of the training step is checked against it.

Weights: the official fixture's (../shared/fixtures/rtdetr_r18vd_official.pt)
converted to ours, with the all-zero tensors (the official init's zeroed
last box-head layers) filled with seeded noise; batch: its two 640x640
images with fixed ground truth boxes; noise: ``torch.manual_seed(SEED)``
just before ``model.loss`` (the denoising queries are the only random draw
of the loss). The model is in
training mode (BatchNorm uses batch statistics).

    python -m tests.loss_reference  # tests/data/r18vd_loss_reference.json
"""
import json
import os.path as osp

import torch
from mmengine.structures import InstanceData

from mmdet.structures import DetDataSample
from rtdetr_zoo.apis import load_detector
from rtdetr_zoo.deploy import convert_official_state_dict
from rtdetr_zoo.engine import read_checkpoint

from .utils import OFFICIAL_FIXTURE, REPO_ROOT, config_path

REFERENCE = osp.join(REPO_ROOT, 'tests', 'data', 'r18vd_loss_reference.json')
SEED = 2024
# (x1, y1, x2, y2) in 640x640 pixels and COCO label index, per image.
GT_BOXES = ([[120.0, 80.0, 520.0, 600.0], [30.0, 300.0, 200.0, 420.0]],
            [[200.0, 150.0, 450.0, 500.0]])
GT_LABELS = ([15, 0], [15])


def build_reference_model(**cfg_options):
    """configs/rtdetr_r18vd_coco.py (with ``cfg_options``) and the fixture's
    official weights, in training mode."""
    fixture = read_checkpoint(OFFICIAL_FIXTURE)
    state_dict, _ = convert_official_state_dict(fixture['state_dict'])
    model = load_detector(config_path('rtdetr_r18vd_coco'),
                          cfg_options=cfg_options)
    state_dict = {k: v.float() for k, v in state_dict.items()}
    gen = torch.Generator().manual_seed(SEED)
    for key, value in state_dict.items():
        if value.is_floating_point() and not value.any():
            # The official init zeroes the last layer of each box head; fill
            # them so that the box losses depend on every decoder layer.
            value.normal_(0, 0.02, generator=gen)
    model.load_state_dict(state_dict, strict=True)
    return model.train(), fixture['images_u8']


def reference_batch(model, images_u8):
    """The fixture's two images through the data pre-processor (normalised
    and padded as in training, without the random batch resizing), with the
    fixed ground truth."""
    samples = []
    for boxes, labels in zip(GT_BOXES, GT_LABELS):
        sample = DetDataSample(metainfo=dict(
            img_shape=(640, 640), ori_shape=(640, 640),
            scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes), labels=torch.tensor(labels))
        samples.append(sample)
    data = model.data_preprocessor(
        dict(inputs=list(images_u8), data_samples=samples), training=False)
    return data['inputs'], data['data_samples']


def reference_losses(model, images_u8):
    """``model.loss`` on the reference batch with the fixed noise, as a dict
    of floats."""
    inputs, samples = reference_batch(model, images_u8)
    torch.manual_seed(SEED)
    losses = model.loss(inputs, samples)
    return {k: float(v.detach()) for k, v in losses.items()}


if __name__ == '__main__':
    model, images = build_reference_model()
    losses = reference_losses(model, images)
    with open(REFERENCE, 'w') as f:
        json.dump(losses, f, indent=1, sort_keys=True)
    print(f'wrote {len(losses)} loss terms to {REFERENCE}')
