# The optimizer parameter groups of the official RT-DETRv2 configs
# (rtdetrv2_pytorch, `optimizer.params`), in this project's parameter names
# (backbone: `backbone.`; the official encoder and decoder: everything else;
# norms: `norm`/`bn` modules). A config lists this file as a base and picks
# its optimizer (RegexParamGroupsConstructor, rtdetr_zoo.engine):
#   optim_wrapper = _base_.rtdetrv2_r34_optim_wrapper
# A parameter joins the first group it matches; the others keep AdamW's
# lr 1e-4 and weight decay 1e-4.

# R18 (rtdetrv2_r18vd_120e_coco, _dsp_3x): no weight decay on norms; the
# backbone at the full learning rate.
rtdetrv2_r18_groups = [
    dict(pattern=r'(?:norm|bn)[^.]*\.', weight_decay=0.0),
]
# R34 (rtdetrv2_r34vd_120e_coco, _dsp_1x): the backbone at 5e-5, its norms
# without weight decay; no weight decay on the other norms and biases (the
# attention's `in_proj_bias` included: the official pattern is any name with
# `bias`).
rtdetrv2_r34_groups = [
    dict(pattern=r'^backbone\.(?!.*(?:norm|bn)[^.]*\.)', lr=5e-5),
    dict(pattern=r'^backbone\.', lr=5e-5, weight_decay=0.0),
    dict(pattern=r'(?:norm|bn)[^.]*\.|bias$', weight_decay=0.0),
]
# R50 and R50-M (rtdetrv2_r50vd_6x_coco, _m_7x, their dsp models): the
# backbone's weights other than norms at 1e-5 (its norms keep the defaults);
# no weight decay on the other norms.
rtdetrv2_r50_groups = [
    dict(pattern=r'^backbone\.(?!.*(?:norm|bn)[^.]*\.)', lr=1e-5),
    dict(pattern=r'^(?!backbone\.).*(?:norm|bn)[^.]*\.', weight_decay=0.0),
]
# R101 (rtdetrv2_r101vd_6x_coco): as R50 with the backbone at 1e-6.
rtdetrv2_r101_groups = [
    dict(pattern=r'^backbone\.(?!.*(?:norm|bn)[^.]*\.)', lr=1e-6),
    dict(pattern=r'^(?!backbone\.).*(?:norm|bn)[^.]*\.', weight_decay=0.0),
]


def _optim_wrapper(groups):
    return dict(constructor='RegexParamGroupsConstructor',
                paramwise_cfg=dict(_delete_=True, groups=groups))


rtdetrv2_r18_optim_wrapper = _optim_wrapper(rtdetrv2_r18_groups)
rtdetrv2_r34_optim_wrapper = _optim_wrapper(rtdetrv2_r34_groups)
rtdetrv2_r50_optim_wrapper = _optim_wrapper(rtdetrv2_r50_groups)
rtdetrv2_r101_optim_wrapper = _optim_wrapper(rtdetrv2_r101_groups)
