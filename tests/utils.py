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


def _shared_fixture(name):
    """Path of ``../shared/fixtures/<name>`` and a skip marker for its
    absence (CI always has the shared folder beside the repo)."""
    path = osp.join(REPO_ROOT, '..', 'shared', 'fixtures', name)
    return path, pytest.mark.skipif(
        not osp.isfile(path),
        reason=f'official fixture not present at {path} (it lives in the '
        'shared folder beside the repo, which CI always has)')


# The official RT-DETR R18-vd weights, inputs and outputs, and those of
# RT-DETRv2 R18-vd for both sampling methods (../shared/fixtures/README.md).
OFFICIAL_FIXTURE, requires_official_fixture = _shared_fixture(
    'rtdetr_r18vd_official.pt')
OFFICIAL_V2_FIXTURE, requires_official_v2_fixture = _shared_fixture(
    'rtdetrv2_r18vd_official.pt')
# The official DEIM R18-vd (on RT-DETRv2): random weights, outputs and every
# term of its criterion.
OFFICIAL_DEIM_FIXTURE, requires_official_deim_fixture = _shared_fixture(
    'deim_rtdetrv2_r18vd_official.pt')
# The official D-FINE-S under the DEIM recipe (HGNetv2-B0 with learnable
# affines): random weights, outputs and every term of its criterion.
OFFICIAL_DFINE_FIXTURE, requires_official_dfine_fixture = _shared_fixture(
    'deim_dfine_hgnetv2_s_official.pt')
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


def assert_detections_match_official(results, reference, orig_sizes):
    """Post-processed detections (``InstanceData`` per image, rescaled to
    the original images) equal an official fixture's ``post_scores`` (1e-4)
    and, where the score order is unambiguous, its ``post_labels`` and
    ``post_boxes`` (the official boxes clipped to the image, as ours are;
    1e-2 px)."""
    for b, result in enumerate(results):
        w, h = orig_sizes[b].tolist()
        ref_scores = reference['post_scores'][b]
        torch.testing.assert_close(result.scores, ref_scores,
                                   atol=1e-4, rtol=1e-4)
        gaps = ref_scores[:-1] - ref_scores[1:]
        clear = torch.ones_like(ref_scores, dtype=torch.bool)
        clear[:-1] &= gaps > 1e-4
        clear[1:] &= gaps > 1e-4
        assert clear.sum() > 10
        assert torch.equal(result.labels[clear],
                           reference['post_labels'][b][clear])
        ref_boxes = reference['post_boxes'][b].clone()
        ref_boxes[:, 0::2] = ref_boxes[:, 0::2].clamp(0, w)
        ref_boxes[:, 1::2] = ref_boxes[:, 1::2].clamp(0, h)
        torch.testing.assert_close(result.bboxes[clear], ref_boxes[clear],
                                   atol=1e-2, rtol=1e-4)


def assert_same_attention(ours, reference, make_inputs):
    """Two deformable-attention modules with the same parameters compute
    the same outputs (1e-5) and gradients of the inputs and parameters
    (1e-5 absolute, 1e-4 relative) on ``make_inputs()`` (a dict of
    ``query``, ``value``, ``reference_points``, ``spatial_shapes``,
    ``level_start_index``), with a position embedding added."""
    outputs, grads = [], []
    for module in (ours, reference):
        inputs = {k: v.clone().requires_grad_(v.is_floating_point())
                  for k, v in make_inputs().items()}
        out = module(query_pos=torch.ones_like(inputs['query']), **inputs)
        out.square().sum().backward()
        outputs.append(out)
        grads.append([inputs['query'].grad, inputs['value'].grad] +
                     [p.grad for p in module.parameters()])
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5,
                               rtol=1e-5)
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def assert_aligned_outputs_match(cls_scores, bbox_preds, aligned, reference,
                                 max_unmatched, atol=1e-4):
    """One image's last-layer logits (Q, C) and boxes (Q, 4) equal an
    official fixture's ``pred_logits`` / ``pred_boxes`` (``atol`` and 1e-4
    relative) on the
    queries aligned with it: ``aligned`` = (a bool (Q,) mask of the
    reference queries found, the index (Q,) of ours for each); at most
    ``max_unmatched`` reference queries may be missing (near-ties reorder
    queries), and no query of ours is used twice."""
    same, index = aligned
    assert (~same).sum() <= max_unmatched
    index = index[same]
    assert index.unique().numel() == index.numel()
    torch.testing.assert_close(cls_scores[index],
                               reference['pred_logits'][same],
                               atol=atol, rtol=1e-4)
    torch.testing.assert_close(bbox_preds[index],
                               reference['pred_boxes'][same],
                               atol=atol, rtol=1e-4)


def align_queries(ours, official):
    """The distance (Q,) from each official query's box (Q, 4) to the
    nearest of ours (Q', 4), and the index (Q,) of that query of ours."""
    dist = (official[:, None] - ours[None]).abs().amax(-1)
    min_dist, index = dist.min(-1)
    return min_dist, index


def official_anchors(fixture, model):
    """The anchors the official references were computed with, checked
    against ours.

    In eval mode the official v2 (and DEIM) model reads its anchors from its
    ``anchors`` / ``valid_mask`` buffers, here from the fixture's state
    dict (fp16 in the v2 fixture, float32 in DEIM's); ours are recomputed
    in float32 (the converter drops the buffers). The two differ by the
    fp16 rounding at most (up to 1.6e-3 on logits near -4.4), which moves
    the final boxes of border queries by ~1e-4; the references are matched
    with the official anchors.
    """
    anchors = fixture['state_dict']['decoder.anchors'].float()
    valid = fixture['state_dict']['decoder.valid_mask'].bool()
    ours, our_valid = model.generate_anchors(
        torch.tensor([[80, 80], [40, 40], [20, 20]]), torch.device('cpu'),
        torch.float32)
    assert torch.equal(our_valid, valid)
    finite = valid.expand_as(anchors)
    torch.testing.assert_close(anchors[finite], ours[finite], rtol=2**-11,
                               atol=0)
    assert torch.isinf(ours[~finite]).all()
    return anchors, valid


def official_release_file(state_dict, path):
    """Write an official fixture's ``state_dict`` (fp16, cast to fp32) as an
    official release file (``{'ema': {'module': ...}}``) at ``path``;
    returns the path as a string."""
    weights = {k: v.float() if v.is_floating_point() else v
               for k, v in state_dict.items()}
    torch.save(dict(ema=dict(module=weights)), path)
    return str(path)


def official_test_samples(orig_sizes):
    """Data samples of an official fixture's 640x640 test inputs, one per
    original ``[w, h]`` in ``orig_sizes`` (rescaled back to it)."""
    return [DetDataSample(metainfo=dict(
        img_shape=(640, 640), batch_input_shape=(640, 640),
        ori_shape=(h, w), scale_factor=(640 / w, 640 / h)))
        for w, h in orig_sizes.tolist()]


def random_ground_truth(num_classes, counts, sizes, seed=0):
    """Random boxes for images of ``sizes`` (H, W) with ``counts`` boxes
    each: per image ``InstanceData`` (``bboxes`` xyxy pixels, ``labels``),
    meta (``img_shape``) and data sample."""
    gen = torch.Generator().manual_seed(seed)
    instances, metas, samples = [], [], []
    for (h, w), n in zip(sizes, counts):
        size = torch.tensor([w, h])
        xy = torch.rand(n, 2, generator=gen) * size * 0.6
        wh = (torch.rand(n, 2, generator=gen) * 0.3 + 0.05) * size
        instances.append(InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1),
            labels=torch.randint(0, num_classes, (n, ), generator=gen)))
        metas.append(dict(img_shape=(h, w)))
        samples.append(DetDataSample(metainfo=metas[-1]))
        samples[-1].gt_instances = instances[-1]
    return instances, metas, samples
