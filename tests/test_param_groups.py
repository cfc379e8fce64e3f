"""Optimizer parameter groups by regular expressions on parameter names
(RegexParamGroupsConstructor), as the official RT-DETRv2 configs set them."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper

from .utils import build_detector_from_config

# rtdetrv2_r34vd_120e_coco's groups, in our parameter names.
GROUPS = [
    dict(pattern=r'^backbone\.(?!.*(?:norm|bn)\.)', lr=5e-5),
    dict(pattern=r'^backbone\.', lr=5e-5, weight_decay=0.0),
    dict(pattern=r'^(?!backbone\.).*(?:(?:norm|bn)[^.]*\.|\.bias$)',
         weight_decay=0.0),
]


def _wrapper(model, groups):
    return build_optim_wrapper(model, dict(
        type='OptimWrapper', constructor='RegexParamGroupsConstructor',
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
        paramwise_cfg=dict(groups=groups)))


def test_each_parameter_joins_the_first_matching_group():
    model = build_detector_from_config('rtdetrv2_r18vd_120e_coco')
    groups = _wrapper(model, GROUPS).optimizer.param_groups
    assert [(g['lr'], g['weight_decay']) for g in groups] == [
        (5e-5, 1e-4), (5e-5, 0.0), (1e-4, 0.0), (1e-4, 1e-4)]
    names = {id(p): n for n, p in model.named_parameters()}
    members = [{names[id(p)] for p in g['params']} for g in groups]
    assert 'backbone.stem.0.conv.weight' in members[0]
    assert 'backbone.stem.0.bn.weight' in members[1]
    assert 'neck.input_proj.0.bn.bias' in members[2]
    assert 'memory_trans_norm.weight' in members[2]
    assert 'decoder.layers.0.norms.1.weight' in members[2]
    assert 'bbox_head.cls_branches.0.bias' in members[2]
    assert 'bbox_head.cls_branches.0.weight' in members[3]
    assert sum(map(len, members)) == sum(
        p.requires_grad for p in model.parameters())
    assert not set.intersection(*members)


def test_bad_groups_are_named():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match='no trainable parameter matches '
                       "the optimizer group pattern '\\^backbone'"):
        _wrapper(model, [dict(pattern='^backbone', lr=1e-5)])
    with pytest.raises(ValueError, match=r'groups\[0\] has no `pattern`'):
        _wrapper(model, [dict(lr=1e-5)])
    with pytest.raises(ValueError, match='not a regular expression'):
        _wrapper(model, [dict(pattern='(', lr=1e-5)])
