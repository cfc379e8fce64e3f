"""Optimizer parameter groups by regular expressions on parameter names
(RegexParamGroupsConstructor), as the official RT-DETRv2 and DEIM configs
set them."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from torch.nn.modules.batchnorm import _NormBase

from .utils import build_detector_from_config, load_config

# (lr, weight decay) that the official RT-DETRv2 configs
# (rtdetrv2_pytorch/configs/rtdetrv2/*.yml, `optimizer.params` on AdamW with
# lr 1e-4 and weight decay 1e-4) give each kind of parameter: R18 no decay
# on norms; R34 the backbone at 5e-5, its norms without decay, no decay on
# the other norms and on biases; R50 the backbone at 1e-5 except its norms,
# no decay on the other norms.
DEFAULT, NO_DECAY = (1e-4, 1e-4), (1e-4, 0.0)
OFFICIAL = {
    'rtdetrv2_r18vd_120e_coco': dict(
        backbone=DEFAULT, backbone_norm=NO_DECAY, norm=NO_DECAY,
        bias=DEFAULT, weight=DEFAULT),
    'rtdetrv2_r34vd_120e_coco': dict(
        backbone=(5e-5, 1e-4), backbone_norm=(5e-5, 0.0), norm=NO_DECAY,
        bias=NO_DECAY, weight=DEFAULT),
    'rtdetrv2_r50vd_6x_coco': dict(
        backbone=(1e-5, 1e-4), backbone_norm=DEFAULT, norm=NO_DECAY,
        bias=DEFAULT, weight=DEFAULT),
}
# The official DEIM configs (DEIM, configs/deim_rtdetrv2/deim_*.yml, AdamW
# lr 2e-4, weight decay 1e-4): no decay on any norm (the backbone's at the
# full lr); R34 the backbone's other weights at 1e-4, R50 at 2e-5, R101 at
# 2e-6.
DEIM_DEFAULT, DEIM_NO_DECAY = (2e-4, 1e-4), (2e-4, 0.0)
OFFICIAL.update({
    f'deim_rtdetrv2_{name}': dict(
        backbone=(backbone_lr, 1e-4), backbone_norm=DEIM_NO_DECAY,
        norm=DEIM_NO_DECAY, bias=DEIM_DEFAULT, weight=DEIM_DEFAULT)
    for name, backbone_lr in [('r18vd_120e_coco', 2e-4),
                              ('r34vd_120e_coco', 1e-4),
                              ('r50vd_60e_coco', 2e-5),
                              ('r50vd_m_60e_coco', 2e-5),
                              ('r101vd_60e_coco', 2e-6)]
})
# The official D-FINE and DEIM-D-FINE configs (DEIM,
# configs/deim_dfine/{dfine,deim}_hgnetv2_*_coco.yml), as their regexes act
# on the official parameter names: D-FINE's
# '^(?=.*backbone)(?!.*norm|bn).*$' takes the whole backbone, BatchNorm
# included (its norms are named `bn`), at the backbone lr with weight decay;
# N, S, M no decay on the other norms and biases, L, X on the other norms
# only (their backbone BatchNorm is frozen); DEIM-D-FINE-S, M the backbone's
# weights at the backbone lr and no decay on any norm; DEIM-D-FINE-N as
# D-FINE-N; DEIM-D-FINE-L, X D-FINE's patterns, now with the backbone's
# BatchNorm trained.


def _dfine_kinds(lr, backbone_lr, weight_decay, kind):
    default, no_decay = (lr, weight_decay), (lr, 0.0)
    backbone = (backbone_lr, weight_decay)
    if kind == 'deim':
        return dict(backbone=backbone, backbone_norm=no_decay,
                    norm=no_decay, bias=default, weight=default)
    kinds = dict(backbone=backbone, backbone_norm=backbone, norm=no_decay,
                 bias=no_decay if kind == 'biases' else default,
                 weight=default)
    if kind == 'frozen_norm':
        del kinds['backbone_norm']
    return kinds


OFFICIAL.update({
    name: _dfine_kinds(*options) for name, options in [
        ('dfine_hgnetv2_n_coco', (8e-4, 4e-4, 1e-4, 'biases')),
        ('dfine_hgnetv2_s_coco', (2e-4, 1e-4, 1e-4, 'biases')),
        ('dfine_hgnetv2_m_coco', (2e-4, 2e-5, 1e-4, 'biases')),
        ('dfine_hgnetv2_l_coco', (2.5e-4, 1.25e-5, 1.25e-4, 'frozen_norm')),
        ('dfine_hgnetv2_x_coco', (2.5e-4, 2.5e-6, 1.25e-4, 'frozen_norm')),
        ('deim_dfine_hgnetv2_n_coco', (8e-4, 4e-4, 1e-4, 'biases')),
        ('deim_dfine_hgnetv2_s_coco', (4e-4, 2e-4, 1e-4, 'deim')),
        ('deim_dfine_hgnetv2_m_coco', (4e-4, 4e-5, 1e-4, 'deim')),
        ('deim_dfine_hgnetv2_l_coco', (5e-4, 2.5e-5, 1.25e-4, 'norms')),
        ('deim_dfine_hgnetv2_x_coco', (5e-4, 5e-6, 1.25e-4, 'norms')),
    ]
})
NORM_LAYERS = (_NormBase, torch.nn.LayerNorm, torch.nn.GroupNorm)


def parameter_kinds(model):
    """The kind of every trainable parameter of ``model``, by the module
    that holds it (not by its name): ``backbone`` / ``backbone_norm`` in
    the backbone, else ``norm``, ``bias`` (any name with "bias", as the
    official patterns match it) or ``weight``."""
    kinds = {}
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            norm = isinstance(module, NORM_LAYERS)
            if module_name.startswith('backbone.'):
                kind = 'backbone_norm' if norm else 'backbone'
            else:
                kind = 'norm' if norm else (
                    'bias' if 'bias' in param_name else 'weight')
            kinds[f'{module_name}.{param_name}'] = kind
    return kinds


def _wrapper(model, groups):
    return build_optim_wrapper(model, dict(
        type='OptimWrapper', constructor='RegexParamGroupsConstructor',
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
        paramwise_cfg=dict(groups=groups)))


@pytest.mark.parametrize('name', sorted(OFFICIAL))
def test_config_groups_give_the_official_lr_and_decay(name):
    """The optimizer a config builds (its schedule and
    _base_/schedules/{rtdetrv2,deim,dfine}_param_groups.py) gives every
    trainable parameter the official learning rate and weight decay of its
    kind, and puts each in one group (frozen ones in none)."""
    model = build_detector_from_config(name)
    groups = build_optim_wrapper(
        model, load_config(name).optim_wrapper).optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    options = {}
    for group in groups:
        for param in group['params']:
            assert names[id(param)] not in options, names[id(param)]
            options[names[id(param)]] = (group['lr'], group['weight_decay'])
    kinds = parameter_kinds(model)
    assert set(kinds.values()) == set(OFFICIAL[name])
    wrong = {n: (options.get(n), OFFICIAL[name][kind])
             for n, kind in kinds.items()
             if options.get(n) != OFFICIAL[name][kind]}
    assert not wrong, wrong
    assert set(options) == set(kinds)


def test_each_parameter_joins_the_first_matching_group():
    """A backbone norm matches both the backbone group and the norm group
    below it: it joins the first. Parameters no pattern selects keep the
    optimizer's options."""
    model = torch.nn.Sequential()
    model.add_module('backbone', torch.nn.BatchNorm1d(2))
    model.add_module('head', torch.nn.Linear(2, 2))
    groups = _wrapper(model, [
        dict(pattern=r'^backbone\.', lr=5e-5),
        dict(pattern=r'\.bias$', weight_decay=0.0),
    ]).optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert [([names[id(p)] for p in g['params']], g['lr'],
             g['weight_decay']) for g in groups] == [
        (['backbone.weight', 'backbone.bias'], 5e-5, 1e-4),
        (['head.bias'], 1e-4, 0.0),
        (['head.weight'], 1e-4, 1e-4)]


def test_bad_groups_are_named():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match='no trainable parameter matches '
                       "the optimizer group pattern '\\^backbone'"):
        _wrapper(model, [dict(pattern='^backbone', lr=1e-5)])
    with pytest.raises(ValueError, match=r'groups\[0\] has no `pattern`'):
        _wrapper(model, [dict(lr=1e-5)])
    with pytest.raises(ValueError, match='not a regular expression'):
        _wrapper(model, [dict(pattern='(', lr=1e-5)])
