# The optimizer parameter groups of the official DEIM configs (DEIM,
# configs/deim_rtdetrv2/deim_*.yml, `optimizer.params` on AdamW lr 2e-4,
# weight decay 1e-4), in this project's parameter names (backbone:
# `backbone.`; norms: `norm`/`bn` modules). Official patterns:
# '^(?=.*backbone)(?!.*norm).*$' for the backbone's weights other than norms,
# then '^(?=.*(?:norm|bn)).*$' without weight decay for every norm, the
# backbone's included (at the full lr). A parameter joins the first group it
# matches; a config picks its optimizer:
#   optim_wrapper = _base_.deim_r34_optim_wrapper

_no_decay_on_norms = dict(pattern=r'(?:norm|bn)[^.]*\.', weight_decay=0.0)


def _groups(backbone_lr):
    return [
        dict(pattern=r'^backbone\.(?!.*(?:norm|bn)[^.]*\.)', lr=backbone_lr),
        _no_decay_on_norms
    ]


def _optim_wrapper(groups):
    return dict(optimizer=dict(lr=2e-4),
                constructor='RegexParamGroupsConstructor',
                paramwise_cfg=dict(_delete_=True, groups=groups))


# R18 (deim_r18vd_120e_coco): the backbone at the full learning rate.
deim_r18_optim_wrapper = _optim_wrapper([_no_decay_on_norms])
# R34 (deim_r34vd_120e_coco): the backbone's weights at 1e-4.
deim_r34_optim_wrapper = _optim_wrapper(_groups(1e-4))
# R50 and R50-M (deim_r50vd_60e_coco, deim_r50vd_m_60e_coco): at 2e-5, the
# zoo's ImageNet-pretrained backbones likewise (a tenth of the lr).
deim_r50_optim_wrapper = _optim_wrapper(_groups(2e-5))
# R101 (deim_r101vd_60e_coco): at 2e-6.
deim_r101_optim_wrapper = _optim_wrapper(_groups(2e-6))
