"""The batched criterion (``RTDETRCriterion``) is configured by loss and
match-cost modules: a new loss term or match cost is a registered class and
a config line, and a config that mixes the old and the new layout fails
with a message naming the field."""
import copy

import pytest
import torch
from mmdet.models.task_modules.assigners import FocalLossCost
from mmdet.registry import MODELS, TASK_UTILS
from mmengine.structures import InstanceData

from rtdetr_zoo.apis import load_detector
from rtdetr_zoo.losses import MatchedLoss
from rtdetr_zoo.structures import GroundTruth
from rtdetr_zoo.task_modules import BatchedHungarianMatcher

from .utils import SMALL_DETECTOR, load_config, random_ground_truth

CONFIG = 'rtdetr_r18vd_coco'
SIZES = ((96, 128), (112, 80), (64, 64))
COUNTS = (3, 0, 5)


@MODELS.register_module(force=True)
class MeanScoreToyLoss(MatchedLoss):
    """A toy term: the sum of all class probabilities of a layer, divided
    by the part's classification normaliser."""

    def forward(self, matches, avg_factors):
        probs = matches.cls_scores.sigmoid().sum((1, 2, 3))
        return self.loss_weight * probs / avg_factors.classification


@TASK_UTILS.register_module(force=True)
class QueryOrderToyCost:
    """A toy cost: a query's position in its image, the same for every
    ground truth; weighted high, it makes the first queries the matches."""

    def __init__(self, weight=1.0):
        self.weight = weight

    def batched_cost(self, cls_scores, pred_boxes, gt):
        num_layers, num_images, num_queries = cls_scores.shape[:3]
        position = torch.arange(num_queries, dtype=cls_scores.dtype)
        return (position[:, None] * self.weight).expand(
            num_layers, num_images, num_queries, gt.labels.size(1))


def _head_inputs(model, seed=1):
    """Random decoder, encoder and denoising outputs of the head and the
    ground truth: ``loss_by_feat``'s arguments."""
    head = model.bbox_head
    instances, metas, samples = random_ground_truth(
        head.num_classes, COUNTS, SIZES)
    *_, dn_meta = model.dn_query_generator(samples)
    total = dn_meta['num_denoising_queries'] + model.num_queries
    gen = torch.Generator().manual_seed(seed)
    shape = (model.decoder.num_layers, len(SIZES), total)
    logits = torch.randn(shape + (head.num_classes, ), generator=gen)
    boxes = torch.rand(shape + (4, ), generator=gen) * 0.5 + 0.25
    enc_logits = torch.randn(len(SIZES), model.num_queries,
                             head.num_classes, generator=gen)
    enc_boxes = torch.rand(len(SIZES), model.num_queries, 4,
                           generator=gen) * 0.5 + 0.25
    return (logits, boxes, enc_logits, enc_boxes, instances, metas, dn_meta)


def _build(cfg):
    model = load_detector(cfg)
    model.init_weights()
    return model.train()


@pytest.fixture(scope='module')
def config():
    return load_config(CONFIG, **SMALL_DETECTOR)


def test_a_loss_term_added_by_config_alone(config):
    plain = _build(copy.deepcopy(config))
    cfg = copy.deepcopy(config)
    cfg.model.bbox_head.criterion.losses.toy = dict(
        type='MeanScoreToyLoss', loss_weight=0.5)
    model = _build(cfg)
    inputs = _head_inputs(model)
    losses = model.bbox_head.loss_by_feat(*inputs)
    reference = plain.bbox_head.loss_by_feat(*inputs)

    # The other terms are unchanged, in their order; each part and layer
    # gains a toy term after its three.
    assert [k for k in losses if 'toy' not in k] == list(reference)
    for key, value in reference.items():
        assert torch.equal(losses[key], value), key
    keys = list(losses)
    assert keys[:4] == ['loss_cls', 'loss_bbox', 'loss_iou', 'loss_toy']
    assert len(losses) == len(reference) * 4 // 3

    logits, _, enc_logits, _, _, _, dn_meta = inputs
    num_dn = dn_meta['num_denoising_queries']
    matching, denoising = logits[:, :, num_dn:], logits[:, :, :num_dn]
    num_matched = sum(min(c, model.num_queries) for c in COUNTS)
    num_dn_positive = sum(COUNTS) * dn_meta['num_denoising_groups']

    def toy(scores, normaliser):
        return 0.5 * scores.sigmoid().sum() / normaliser

    last = model.decoder.num_layers - 1
    expected = {'loss_toy': toy(matching[last], num_matched),
                'enc_loss_toy': toy(enc_logits, num_matched),
                'dn_loss_toy': toy(denoising[last], num_dn_positive)}
    for layer in range(last):
        expected[f'd{layer}.loss_toy'] = toy(matching[layer], num_matched)
        expected[f'd{layer}.dn_loss_toy'] = toy(denoising[layer],
                                                num_dn_positive)
    assert sorted(k for k in losses if 'toy' in k) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(losses[key], value, rtol=1e-5, atol=0)


def test_a_match_cost_added_by_config_alone(config):
    cfg = copy.deepcopy(config)
    cfg.model.bbox_head.criterion.matcher.match_costs.append(
        dict(type='QueryOrderToyCost', weight=1e3))
    model = _build(cfg)
    matcher = model.bbox_head.criterion.matcher
    assert isinstance(matcher.match_costs[-1], QueryOrderToyCost)
    logits, boxes, _, _, instances, metas, dn_meta = _head_inputs(model)
    num_dn = dn_meta['num_denoising_queries']
    logits, boxes = logits[:, :, num_dn:], boxes[:, :, num_dn:]
    gt = GroundTruth.from_instances(instances, metas)
    query_index, gt_index = matcher(logits, boxes, gt)
    num_queries = logits.size(2)
    first = sorted(image * num_queries + i
                   for image, count in enumerate(COUNTS)
                   for i in range(count))
    for layer in range(len(logits)):
        assert sorted(query_index[layer].tolist()) == first
        assert sorted(gt_index[layer].tolist()) == list(range(sum(COUNTS)))
    # Without the toy cost the random predictions match other queries.
    plain = BatchedHungarianMatcher(
        config.model.bbox_head.criterion.matcher.match_costs)
    assert sorted(plain(logits, boxes, gt)[0][0].tolist()) != first


def test_a_cost_without_batched_cost_is_refused():
    with pytest.raises(TypeError, match='FocalLossCost in match_costs has '
                       'no batched_cost method'):
        BatchedHungarianMatcher([dict(type='FocalLossCost', weight=2.0)])
    with pytest.raises(TypeError, match='FocalLossCost'):
        BatchedHungarianMatcher([FocalLossCost(weight=2.0)])


def test_old_head_layout_fails_with_the_field_named(config):
    cfg = copy.deepcopy(config)
    cfg.model.train_cfg = dict(assigner=dict(
        type='HungarianAssigner', match_costs=[]))
    with pytest.raises(ValueError, match='model.train_cfg.assigner'):
        load_detector(cfg)
    cfg = copy.deepcopy(config)
    cfg.model.bbox_head.criterion.loss_bbox = dict(type='L1Loss')
    with pytest.raises(ValueError, match='criterion.loss_bbox'):
        load_detector(cfg)


def test_class_agnostic_encoder_is_explicit(config):
    default = _build(copy.deepcopy(config))
    assert not default.bbox_head.criterion.class_agnostic_encoder
    cfg = copy.deepcopy(config)
    cfg.model.query_select_method = 'agnostic'
    agnostic = _build(cfg)
    assert agnostic.bbox_head.criterion.class_agnostic_encoder
    assert agnostic.bbox_head.cls_branches[-1].out_features == 1
    inputs = list(_head_inputs(agnostic))
    inputs[2] = inputs[2][..., :1]
    losses = agnostic.bbox_head.loss_by_feat(*inputs)
    assert {'enc_loss_cls', 'enc_loss_bbox', 'enc_loss_iou'} <= set(losses)
    # One class: a ground truth of any label is the encoder's class 0, so
    # the labels do not change its losses; the decoder's do change.
    relabelled = list(inputs)
    relabelled[4] = [InstanceData(bboxes=gt.bboxes,
                                  labels=(gt.labels + 1) % 80)
                     for gt in inputs[4]]
    other = agnostic.bbox_head.loss_by_feat(*relabelled)
    for key in ('enc_loss_cls', 'enc_loss_bbox', 'enc_loss_iou'):
        assert torch.equal(losses[key], other[key]), key
    assert not torch.equal(losses['loss_cls'], other['loss_cls'])


def test_mmdet_per_image_loss_methods_are_not_reachable(config):
    head = _build(copy.deepcopy(config)).bbox_head
    for name in ('loss_dn', '_loss_dn_single', 'get_dn_targets',
                 'loss_by_feat_single', 'get_targets'):
        with pytest.raises(RuntimeError, match='one batched pass'):
            getattr(head, name)()
    with pytest.raises(TypeError, match='abstract'):
        MatchedLoss()
