# DySample (Liu et al., "Learning to Upsample by Learning to Sample",
# ICCV 2023) as the hybrid encoder's x2 top-down up-sampler, as the blog
# posts' Ultralytics `*-DySample` models: lp style, 4 groups, static range
# factor (8,224 parameters per up-sampling at 256 channels). Not a model: a
# config lists this file as a base and replaces the nearest up-sampler with
#   model = dict(
#       neck=dict(upsample_cfg=dict(_delete_=True, **_base_.dysample)))
dysample = dict(type='DySample', scale=2, style='lp', groups=4, dyscope=False)
