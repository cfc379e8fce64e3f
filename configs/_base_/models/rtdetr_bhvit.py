# RT-DETR with BHViT's MSGDC token mixer and CCRI blocks: the blog
# post's Ultralytics YAML (scale `l`: depth 1.0, width 1.0, max_channels
# 512) on the RT-DETR-L head. Backbone CCRINet (stride-4 MSGDC token mixer,
# then 4/4/2 CCRI blocks with MSGDC bottlenecks at strides 8/16/32, channels
# 256/512/512). The blog's neck is RT-DETR-L's with 2 (not 3) blocks per CSP
# fusion block (its `RepC4` x 2, mapped to CSPRepLayer with 2 RepVGG blocks:
# depth_mult = 2/3). See docs/bhvit.md. No ImageNet weights exist for this
# backbone: it trains from scratch (trainable BN, nothing frozen).
_base_ = './rtdetr_hgnetv2_l.py'

model = dict(
    backbone=dict(
        _delete_=True, type='CCRINet', arch='l', out_indices=(1, 2, 3),
        frozen_stages=-1, norm_eval=False),
    neck=dict(in_channels=[256, 512, 512], depth_mult=2 / 3))
