"""Numerical equivalence with the official DEIM-D-FINE-S and D-FINE-S
(ShihuaHuang95/DEIM, ``deim_hgnetv2_s_coco.yml`` and
``dfine_hgnetv2_s_coco.yml``).

The fixture (../shared/fixtures/deim_dfine_hgnetv2_s_official.pt, not in
the repo; its README section lists what it holds) has the official
architecture with random weights: HGNetv2-B0 with the learnable affines,
D-FINE's encoder, the 3-layer FDR decoder (gates, LQEs, the
pre-refinement head), two images, the eval outputs with the eval layer's
distributions, and the 37 weighted terms of ``DEIMCriterion`` for both
recipes (MAL / VFL, L1, GIoU, FGL, DDF of the last layer, the others, the
pre-refinement head, the encoder and the denoising queries; the box and
localisation terms on GO-LSD's union of matches). The weights load the
normal way, ``mmengine.runner.load_checkpoint`` on an official release
layout (``{'ema': {'module': ...}}``).
"""
import pytest
import torch
from mmengine.runner import load_checkpoint
from mmengine.structures import InstanceData

from mmdet.structures import DetDataSample
from rtdetr_zoo.deploy import convert_official_state_dict
from rtdetr_zoo.engine import read_checkpoint
from rtdetr_zoo.layers import FDRDecoderLayer, FDRDeformableAttention

from .utils import (OFFICIAL_DFINE_FIXTURE, align_queries,
                    assert_aligned_outputs_match,
                    assert_detections_match_official,
                    build_detector_from_config, official_anchors,
                    official_release_file, official_test_samples,
                    requires_official_dfine_fixture)

# The fixture's two recipes: our config and the fixture entry.
RECIPES = {
    'deim': ('deim_dfine_hgnetv2_s_coco', 'default'),
    'dfine': ('dfine_hgnetv2_s_coco', 'dfine_recipe'),
}
OFFICIAL_NUM_PARAMS = 10_321_877

pytestmark = requires_official_dfine_fixture


@pytest.fixture(scope='module')
def fixture():
    return read_checkpoint(OFFICIAL_DFINE_FIXTURE)


@pytest.fixture(scope='module')
def official_file(fixture, tmp_path_factory):
    """The fixture's weights (fp32) as an official release file."""
    return official_release_file(
        fixture['state_dict'],
        tmp_path_factory.mktemp('official') / 'deim_dfine_s.pth')


# The plain layout computes as the official code does; the defaults
# (channels-last memory, BatchNorm folded into the convolutions at
# inference) sum in another order (the encoder features reach |21|).
PLAIN = {'model.channels_last': False, 'model.efficient_conv_bn_eval': False}
NUMERICS = {
    'plain': dict(options=PLAIN, atol=1e-4),
    'default': dict(options={}, atol=1e-3),
}


def load_official(config, official_file, **options):
    detector = build_detector_from_config(config, small=False, **options)
    load_checkpoint(detector, official_file, map_location='cpu')
    return detector


def test_every_official_tensor_loads(fixture, official_file):
    """The official D-FINE layout converts completely: every tensor of the
    model comes from the checkpoint; the cached anchors, the second name
    of the shared ``up`` / ``reg_scale`` and the denoising embedding's
    padding row are dropped. The gates, LQEs and the pre-refinement head
    land where the decoder and the head read them."""
    official = fixture['state_dict']
    state_dict, dropped = convert_official_state_dict(official)
    assert sorted(dropped) == [
        'decoder.anchors', 'decoder.decoder.reg_scale', 'decoder.decoder.up',
        'decoder.denoising_class_embed.weight[-1]', 'decoder.valid_mask'
    ]
    assert len(state_dict) + 4 == len(official)
    model = load_official(RECIPES['deim'][0], official_file)
    state = model.state_dict()
    assert set(state) == set(state_dict)
    for key, value in state_dict.items():
        assert torch.equal(state[key], value.to(state[key].dtype)), key
    pairs = {
        'decoder.decoder.layers.1.gateway.gate.weight':
        'decoder.layers.1.norms.1.gate.weight',
        'decoder.decoder.lqe_layers.2.reg_conf.layers.1.weight':
        'bbox_head.lqe_layers.2.reg_conf.layers.1.weight',
        'decoder.pre_bbox_head.layers.2.weight':
        'bbox_head.pre_reg_branch.4.weight',
        'decoder.dec_bbox_head.0.layers.2.weight':
        'bbox_head.reg_branches.0.4.weight',
    }
    for official_key, ours in pairs.items():
        torch.testing.assert_close(state[ours], official[official_key].float(),
                                   rtol=0, atol=0)
    assert float(model.decoder.up) == 0.5
    assert float(model.decoder.reg_scale) == 4.0


def test_architecture(fixture, official_file):
    """Parameters as the official minus the denoising embedding's padding
    row (256) and the two frozen scalars, kept as buffers here; the FDR
    layers and D-FINE's cross-attention without projections; no input
    projection for levels of the decoder width."""
    model = load_official(RECIPES['deim'][0], official_file)
    assert fixture['num_params'] == OFFICIAL_NUM_PARAMS
    ours = sum(p.numel() for p in model.parameters())
    assert OFFICIAL_NUM_PARAMS - ours == 256 + 2
    for layer in model.decoder.layers:
        assert isinstance(layer, FDRDecoderLayer)
        assert isinstance(layer.cross_attn, FDRDeformableAttention)
        assert layer.cross_attn.num_points == [3, 6, 3]
        assert isinstance(layer.cross_attn.value_proj, torch.nn.Identity)
    assert all(isinstance(p, torch.nn.Identity) for p in model.input_proj)
    assert model.bbox_head.reg_branches[0][-1].out_features == 4 * 33
    assert model.bbox_head.reg_branches[-1][-1].out_features == 4


def test_other_weighting_is_refused(official_file, tmp_path):
    """A checkpoint whose ``reg_scale`` is not the config's (D-FINE-X has
    8) is refused with both values named."""
    weights = torch.load(official_file)
    weights['ema']['module']['decoder.reg_scale'] = torch.tensor([8])
    path = str(tmp_path / 'x.pth')
    torch.save(weights, path)
    with pytest.raises(ValueError, match=r'reg_scale.*\[8\].*reg_scale=4'):
        load_official(RECIPES['deim'][0], path)


# Near-ties of the encoder scores at the top-k cut may swap a query.
MAX_UNMATCHED_QUERIES = 3


@pytest.mark.parametrize('numerics', sorted(NUMERICS))
@pytest.mark.parametrize('recipe', sorted(RECIPES))
@torch.no_grad()
def test_outputs_match_official(fixture, official_file, recipe, numerics,
                                monkeypatch):
    """Eval outputs of both images (logits with the LQE, boxes decoded
    from the distributions) against the official after aligning queries;
    with DEIM-D-FINE also the encoder features, the eval layer's corner
    logits and the initial boxes (plain numerics), and the post-processed
    detections."""
    config, entry = RECIPES[recipe]
    setting = NUMERICS[numerics]
    model = load_official(config, official_file,
                          **setting['options']).eval()
    reference = fixture[entry]
    anchors, valid = official_anchors(fixture, model)
    monkeypatch.setattr(model, 'generate_anchors',
                        lambda *args: (anchors, valid))
    images = fixture['images_u8'].float() / 255
    feats = model.neck(model.backbone(images))
    for ours, ref in zip(feats, reference.get('encoder_feats', ())):
        torch.testing.assert_close(ours, ref.float(), rtol=1e-4,
                                   atol=10 * setting['atol'])
    samples = official_test_samples(fixture['orig_sizes'])
    outputs = model.forward_transformer(feats, samples)
    logits, boxes = model.bbox_head.last_layer_predictions(**outputs)
    for b in range(images.size(0)):
        min_dist, index = align_queries(boxes[b], reference['pred_boxes'][b])
        assert_aligned_outputs_match(
            logits[b], boxes[b], (min_dist < 1e-4, index),
            {k: reference[k][b] for k in ('pred_logits', 'pred_boxes')},
            MAX_UNMATCHED_QUERIES, atol=setting['atol'])
    if 'pred_corners' in reference and numerics == 'plain':
        # Query for query (the defaults may swap near-tied queries).
        torch.testing.assert_close(outputs['corners'][-1],
                                   reference['pred_corners'].float(),
                                   rtol=0, atol=setting['atol'])
        torch.testing.assert_close(outputs['initial_boxes'],
                                   reference['ref_points'].float(),
                                   rtol=0, atol=setting['atol'] / 10)
    if 'post_labels' in reference:
        results = model.bbox_head.predict(
            **outputs, batch_data_samples=samples, rescale=True)
        assert_detections_match_official(results, reference,
                                         fixture['orig_sizes'])


def official_name(ours):
    """Our loss key -> the official one (``d1.dn_loss_fgl`` ->
    ``loss_fgl_dn_1``, ``pre.loss_iou`` -> ``loss_giou_pre``)."""
    layer, _, name = ours.rpartition('.')
    denoising = 'dn_' in name
    kind = {'mal': 'mal', 'cls': 'vfl', 'bbox': 'bbox', 'iou': 'giou',
            'fgl': 'fgl', 'ddf': 'ddf'}[name.rsplit('_', 1)[1]]
    if name.startswith('enc_'):
        return f'loss_{kind}_enc_0'
    if layer == 'pre':
        return f'loss_{kind}_dn_pre' if denoising else f'loss_{kind}_pre'
    if layer:  # an earlier decoder layer
        part = 'dn' if denoising else 'aux'
        return f'loss_{kind}_{part}_{layer[1:]}'
    return f'loss_{kind}_dn_2' if denoising else f'loss_{kind}'


@pytest.mark.parametrize('recipe', sorted(RECIPES))
def test_every_loss_term_equals_the_official_criterion(
        fixture, official_file, recipe):
    """The 37 training loss terms against the official ``DEIMCriterion``
    of each recipe, to 1e-4 relative: DEIM-D-FINE's MAL (gamma 1.5) and
    D-FINE's VFL, L1 5, GIoU 2, FGL 0.15, DDF 1.5 (T = 5) for the last
    layer, the two others (DDF: not the last, the teacher), the
    pre-refinement head, the encoder and the denoising queries; the box
    and localisation terms on GO-LSD's union of matches. The model runs in
    training mode on the fixture's images without the data pre-processor,
    with the fixture's denoising noise of 1e-9."""
    config, entry = RECIPES[recipe]
    model = load_official(
        config, official_file, **PLAIN,
        **{'model.dn_cfg.label_noise_scale': 1e-9,
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
    expected = fixture[entry]['losses']
    assert len(losses) == 37
    assert sorted(official_name(k) for k in losses) == sorted(expected)
    for key, value in losses.items():
        reference = float(expected[official_name(key)])
        assert float(value) == pytest.approx(reference, rel=1e-4), key
    total = sum(losses.values())
    total.backward()
    head = model.bbox_head
    for module in (head.pre_reg_branch, head.lqe_layers[0],
                   model.decoder.layers[0].norms[1]):
        assert all(p.grad is not None and p.grad.abs().sum() > 0
                   for p in module.parameters())
