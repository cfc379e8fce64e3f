"""Numerical equivalence with the official DEIM R18-vd on RT-DETRv2
(ShihuaHuang95/DEIM, snapshot a9aa4ad, ``deim_r18vd_120e_coco.yml``).

The fixture (../shared/fixtures/deim_rtdetrv2_r18vd_official.pt, not in the
repo; its README section lists what it holds) has the official
architecture with random weights: DEIM's three decoder options (the
3-layer ``as_reg`` query position MLP, SiLU in the decoder FFN and in the
MLPs), two images, the eval outputs and the 21 weighted terms of
``DEIMCriterion`` (MAL, L1, GIoU for the last layer, the two others, the
encoder and the denoising queries). The weights load the normal way,
``mmengine.runner.load_checkpoint`` on an official release layout
(``{'ema': {'module': ...}}``), into configs/deim_rtdetrv2_r18vd_120e_coco.py.
"""
import pytest
import torch
from mmengine.runner import load_checkpoint
from mmengine.structures import InstanceData

from mmdet.structures import DetDataSample
from rtdetr_zoo.deploy import convert_official_state_dict
from rtdetr_zoo.engine import read_checkpoint
from rtdetr_zoo.layers.mlp import ActivatedMLP

from .utils import (OFFICIAL_DEIM_FIXTURE, align_queries,
                    assert_aligned_outputs_match,
                    assert_detections_match_official,
                    build_detector_from_config, official_anchors,
                    official_release_file,
                    official_test_samples, requires_official_deim_fixture)

CONFIG = 'deim_rtdetrv2_r18vd_120e_coco'
OFFICIAL_NUM_PARAMS = 20_183_440

pytestmark = requires_official_deim_fixture


@pytest.fixture(scope='module')
def fixture():
    return read_checkpoint(OFFICIAL_DEIM_FIXTURE)


@pytest.fixture(scope='module')
def official_file(fixture, tmp_path_factory):
    """The fixture's weights (fp32) as an official release file."""
    return official_release_file(
        fixture['state_dict'],
        tmp_path_factory.mktemp('official') / 'deim_rtdetrv2_r18vd.pth')


# The plain layout and unfolded BatchNorm compute as the official code does;
# the defaults (channels-last memory, BatchNorm folded into the convolutions
# at inference, docs/performance.md) sum in another order. With the
# fixture's calibrated BatchNorm statistics the features reach |22| (the
# v2 fixture's stay near 1), and the defaults move them by up to 5e-4
# (measured; the official code run on this machine: 7e-5, the plain layout
# 6e-5) and the final logits by up to 5.3e-4.
NUMERICS = {
    'plain': dict(options={'model.channels_last': False,
                           'model.efficient_conv_bn_eval': False},
                  feature_atol=1e-4, output_atol=1e-4),
    'default': dict(options={}, feature_atol=1e-3, output_atol=1e-3),
}


def load_official(official_file, **options):
    detector = build_detector_from_config(CONFIG, small=False, **options)
    load_checkpoint(detector, official_file, map_location='cpu')
    return detector


@pytest.fixture(scope='module')
def model(official_file):
    """The config's model loaded from the official file, in eval mode."""
    return load_official(official_file).eval()


def test_every_official_tensor_loads(fixture, model):
    """The official DEIM layout (RT-DETRv2's names plus the 3-layer query
    position MLP) converts completely: every tensor of the model comes from
    the checkpoint, and only the cached buffers and the denoising
    embedding's padding row are dropped."""
    official = fixture['state_dict']
    state_dict, dropped = convert_official_state_dict(official)
    assert sorted(dropped) == [
        'decoder.anchors', 'decoder.denoising_class_embed.weight[-1]',
        'decoder.valid_mask'
    ]
    assert len(state_dict) + 2 == len(official)
    state = model.state_dict()
    assert set(state) == set(state_dict)
    for key, value in state_dict.items():
        assert torch.equal(state[key], value), key
    for layer, shape in enumerate([(256, 4), (256, 256), (256, 256)]):
        key = f'decoder.query_pos_head.layers.{layer}.weight'
        assert tuple(state[key].shape) == shape
        torch.testing.assert_close(
            state[key], official[key].float(), rtol=0, atol=0)


def test_release_layouts_load(fixture, official_file, tmp_path):
    """The DEIM solver's files: ``{'model': ...}`` alone loads, and with
    both the training weights and ``{'ema': {'module': ...}}`` (a release
    or a checkpoint of the official training) the EMA weights are taken."""
    weights = torch.load(official_file)['ema']['module']
    key = 'decoder.query_pos_head.layers.2.weight'
    trained = dict(weights, **{key: weights[key] + 1})
    files = {'model': dict(model=weights),
             'model_and_ema': dict(model=trained, last_epoch=119,
                                   ema=dict(module=weights, updates=10))}
    for name, content in files.items():
        path = str(tmp_path / f'{name}.pth')
        torch.save(content, path)
        detector = load_official(path)
        assert torch.equal(detector.state_dict()[key], weights[key]), name


def test_architecture_options(fixture, model):
    """DEIM's decoder: the ``as_reg`` query position MLP and SiLU in the
    FFNs and every box MLP; parameters as the official minus the
    denoising embedding's padding row."""
    assert fixture['num_params'] == OFFICIAL_NUM_PARAMS
    ours = sum(p.numel() for p in model.parameters())
    assert OFFICIAL_NUM_PARAMS - ours == 256
    head = model.decoder.query_pos_head
    assert isinstance(head, ActivatedMLP) and len(head.layers) == 3
    assert isinstance(head.act, torch.nn.SiLU)
    for layer in model.decoder.layers:
        assert isinstance(layer.ffn.layers[0][1], torch.nn.SiLU)
    for branch in model.bbox_head.reg_branches:
        assert [type(m) for m in branch][1::2] == [torch.nn.SiLU] * 2


# Near-ties of the encoder scores at the top-k cut may swap a query (see
# test_rtdetrv2_equivalence.py).
MAX_UNMATCHED_QUERIES = 3


@pytest.mark.parametrize('numerics', sorted(NUMERICS))
@torch.no_grad()
def test_outputs_match_official(fixture, official_file, numerics,
                                monkeypatch):
    setting = NUMERICS[numerics]
    model = load_official(official_file, **setting['options']).eval()
    reference = fixture['default']
    anchors, valid = official_anchors(fixture, model)
    monkeypatch.setattr(model, 'generate_anchors',
                        lambda *args: (anchors, valid))
    images = fixture['images_u8'].float() / 255
    encoder_feats = model.neck(model.backbone(images))
    # The fixture keeps the encoder features of image 0 only.
    for ours, ref in zip(encoder_feats, reference['encoder_feats']):
        torch.testing.assert_close(ours[:1], ref, rtol=1e-4,
                                   atol=setting['feature_atol'])

    samples = official_test_samples(fixture['orig_sizes'])
    head_inputs = model.forward_transformer(encoder_feats, samples)
    cls_scores, bbox_preds = model.bbox_head(**head_inputs)
    for b in range(images.size(0)):
        min_dist, index = align_queries(bbox_preds[-1][b],
                                        reference['pred_boxes'][b])
        assert_aligned_outputs_match(
            cls_scores[-1][b], bbox_preds[-1][b], (min_dist < 1e-4, index),
            {k: reference[k][b] for k in ('pred_logits', 'pred_boxes')},
            MAX_UNMATCHED_QUERIES, atol=setting['output_atol'])

    results = model.bbox_head.predict_by_feat(
        cls_scores, bbox_preds, [s.metainfo for s in samples], rescale=True)
    assert_detections_match_official(results, reference,
                                     fixture['orig_sizes'])


def official_name(ours):
    """Our loss key -> the official one (``d1.dn_loss_iou`` ->
    ``loss_giou_dn_1``)."""
    layer, _, name = ours.rpartition('.')
    part = 'dn' if 'dn_' in name else 'enc' if name.startswith('enc_') \
        else 'aux'
    kind = {'mal': 'mal', 'bbox': 'bbox', 'iou': 'giou'}[
        name.rsplit('_', 1)[1]]
    if part == 'enc':
        return f'loss_{kind}_enc_0'
    if layer:  # an earlier decoder layer
        return f'loss_{kind}_{part}_{layer[1:]}'
    return f'loss_{kind}_dn_2' if part == 'dn' else f'loss_{kind}'


def test_every_loss_term_equals_the_official_deim_criterion(
        fixture, official_file):
    """The 21 training loss terms against the official ``DEIMCriterion``
    (MAL gamma 1.5 with weight 1, L1 5, GIoU 2; every layer matched on its
    own, ``use_uni_set False``), to 1e-4 relative. The model runs in
    training mode (BatchNorm on batch statistics) on the fixture's images
    without the data pre-processor (the official input is
    ``images / 255``), with the fixture's denoising noise of 1e-9 (the
    groups are the ground truth itself)."""
    model = load_official(
        official_file, **{'model.dn_cfg.label_noise_scale': 1e-9,
                          'model.dn_cfg.box_noise_scale': 1e-9}).train()
    images = fixture['images_u8'].float() / 255
    samples = []
    for boxes, labels in zip(fixture['target_boxes_xyxy_640'],
                             fixture['target_labels']):
        sample = DetDataSample(metainfo=dict(
            img_shape=(640, 640), ori_shape=(640, 640),
            batch_input_shape=(640, 640), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=boxes.float(),
                                           labels=labels.long())
        samples.append(sample)
    losses = model.loss(images, samples)
    expected = fixture['default']['losses']
    assert len(losses) == 21
    assert sorted(official_name(k) for k in losses) == sorted(expected)
    for key, value in losses.items():
        reference = float(expected[official_name(key)])
        assert float(value) == pytest.approx(reference, rel=1e-4), key
