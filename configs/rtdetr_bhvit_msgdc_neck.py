# The MSGDC neck variant: configs/rtdetr_bhvit.py with the hybrid encoder's
# CSP fusion blocks (RepC3 / CSPRepLayer) built from MSGDC bottlenecks
# (MSGDC token mixer + channel MLP, residual) instead of RepVGG blocks,
# through the encoder's `csp_block_cfg` (no encoder code change). The blog
# post's own model keeps RepVGG-style blocks in the neck; this file
# demonstrates the neck variant the blog post mentions ("RepC3 variant").
_base_ = './rtdetr_bhvit.py'

model = dict(
    neck=dict(
        csp_block_cfg=dict(
            type='MSGDCBottleneck', mixer='msgdc', shortcut=True,
            mlp_ratio=2.0)))
