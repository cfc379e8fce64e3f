"""RT-DETRv2's query selection methods (``RTDETR(query_select_method)``):
'default' (RT-DETR's best class per token), 'agnostic' (one class-agnostic
encoder score, matched and supervised as one class) and 'one2many' (the
top (token, class) pairs)."""
import pytest
import torch

from .utils import build_detector_from_config, make_batch

CONFIG = 'rtdetrv2_r18vd_120e_coco'


def test_one2many_selects_a_token_once_per_class():
    model = build_detector_from_config(
        CONFIG, **{'model.query_select_method': 'one2many'})
    scores = torch.zeros(1, 50, 80)
    scores[0, 7, :3] = 5.0   # token 7 is the best for three classes
    scores[0, 9, 0] = 4.0
    selected = model.select_queries(scores)[0, :, 0].tolist()
    assert selected[:4] == [7, 7, 7, 9]
    model.query_select_method = 'default'
    selected = model.select_queries(scores)[0, :, 0].tolist()
    assert selected[:2] == [7, 9] and selected.count(7) == 1


def test_agnostic_scores_one_class_and_trains():
    model = build_detector_from_config(
        CONFIG, **{'model.query_select_method': 'agnostic'})
    enc_head = model.bbox_head.cls_branches[model.decoder.num_layers]
    assert enc_head.out_features == 1
    assert model.bbox_head.cls_branches[0].out_features == 80
    inputs, samples = make_batch(model)
    losses = model.loss(inputs, samples)
    assert {'enc_loss_cls', 'enc_loss_bbox', 'enc_loss_iou'} <= set(losses)
    assert list(losses)[:3] == ['loss_cls', 'loss_bbox', 'loss_iou']
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert enc_head.weight.grad is not None and enc_head.weight.grad.any()
    model.eval()
    with torch.no_grad():
        results = model.predict(*make_batch(model))
    assert results[0].pred_instances.scores.numel() > 0


def test_an_unknown_method_is_named():
    with pytest.raises(ValueError, match="query_select_method must be one "
                       "of .*'agnostic'.*got 'best'"):
        build_detector_from_config(
            CONFIG, **{'model.query_select_method': 'best'})
