# The optimizer settings of the official D-FINE and DEIM-D-FINE configs
# (DEIM, configs/deim_dfine/{dfine,deim}_hgnetv2_*_coco.yml,
# `optimizer.params` on AdamW), in this project's parameter names
# (backbone: `backbone.`; norms: `norm`/`bn` modules; the official encoder
# and decoder: everything else). Each group gives the parameters the
# learning rate and weight decay that the official regexes give them on
# the official model (checked parameter by parameter through the checkpoint
# converter's key mapping):
# - '^(?=.*backbone)(?!.*norm|bn).*$' reads `(?!.*norm|bn)` as "no `norm`
#   and not starting with `bn`": every HGNetv2 parameter (its norms are
#   `bn`), BatchNorm included, gets the backbone lr and the weight decay,
#   and '^(?=.*backbone)(?=.*norm|bn).*$' selects nothing;
# - '^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn|bias)).*$' (N, S, M): no
#   weight decay on the other norms and biases; without `bias` (L, X):
#   norms only;
# - DEIM-D-FINE S, M: '^(?=.*backbone)(?!.*bn).*$' (the backbone without
#   its BatchNorm), then '^(?=.*(?:norm|bn)).*$' without weight decay for
#   every norm, the backbone's at the full lr.
# D-FINE's gate (`gateway`: a linear and a LayerNorm) is our decoder
# layer's `norms.1` (`gate`, `norm`): its linear is not a norm.
# A parameter joins the first group it matches; a config picks its
# optimizer:
#   optim_wrapper = _base_.dfine_m_optim_wrapper

_dfine_norm = r'^(?!.*\.gate\.).*(?:norm|bn)[^.]*\.'
_dfine_no_decay_on_norms_and_biases = dict(
    pattern=_dfine_norm + r'|bias$', weight_decay=0.0)
_dfine_no_decay_on_norms = dict(pattern=_dfine_norm, weight_decay=0.0)


def _optim_wrapper(lr, weight_decay, groups):
    return dict(optimizer=dict(lr=lr, weight_decay=weight_decay),
                constructor='RegexParamGroupsConstructor',
                paramwise_cfg=dict(_delete_=True, groups=groups))


def _dfine(lr, backbone_lr, weight_decay=1e-4, biases=True):
    return _optim_wrapper(lr, weight_decay, [
        dict(pattern=r'^backbone\.', lr=backbone_lr),
        _dfine_no_decay_on_norms_and_biases
        if biases else _dfine_no_decay_on_norms
    ])


def _deim_dfine(lr, backbone_lr, weight_decay=1e-4):
    return _optim_wrapper(lr, weight_decay, [
        dict(pattern=r'^backbone\.(?!.*(?:norm|bn)[^.]*\.)', lr=backbone_lr),
        _dfine_no_decay_on_norms
    ])


# D-FINE (dfine_hgnetv2_*_coco.yml).
dfine_n_optim_wrapper = _dfine(8e-4, 4e-4)
dfine_s_optim_wrapper = _dfine(2e-4, 1e-4)
dfine_m_optim_wrapper = _dfine(2e-4, 2e-5)
dfine_l_optim_wrapper = _dfine(2.5e-4, 1.25e-5, 1.25e-4, biases=False)
dfine_x_optim_wrapper = _dfine(2.5e-4, 2.5e-6, 1.25e-4, biases=False)
# DEIM-D-FINE (deim_hgnetv2_*_coco.yml): N keeps D-FINE-N's; L and X have
# D-FINE's patterns, now on a backbone whose BatchNorm trains (DEIM's
# `freeze_norm: False`), which joins the backbone's group.
deim_dfine_n_optim_wrapper = _dfine(8e-4, 4e-4)
deim_dfine_s_optim_wrapper = _deim_dfine(4e-4, 2e-4)
deim_dfine_m_optim_wrapper = _deim_dfine(4e-4, 4e-5)
deim_dfine_l_optim_wrapper = _dfine(5e-4, 2.5e-5, 1.25e-4, biases=False)
deim_dfine_x_optim_wrapper = _dfine(5e-4, 5e-6, 1.25e-4, biases=False)
# The zoo's backbones trained from scratch or, as their RT-DETRv2 / DEIM
# twins, at the full learning rate (BHViT, R18-vd): S's groups with the
# backbone at S's lr.
dfine_s_full_lr_optim_wrapper = _dfine(2e-4, 2e-4)
deim_dfine_s_full_lr_optim_wrapper = _deim_dfine(4e-4, 4e-4)
