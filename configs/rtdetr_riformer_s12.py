# RT-DETR with a RIFormer-S12 backbone (Wang et al., CVPR 2023), reused
# from mmpretrain 1.2. S12: layers [2, 2, 6, 2], widths [64, 128, 320, 512];
# stages 2-4 (network entries 2/4/6, strides 8/16/32) feed the encoder.
# Initialised as mmpretrain's ImageNet recipe; to start from ImageNet weights
# see docs/riformer.md. Deploy: tools/deploy/reparam_riformer.py, then
# configs/deploy/rtdetr_riformer_s12_deploy.py.
_base_ = './rtdetr_r50vd_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RIFormer',
        arch='s12',
        out_indices=(2, 4, 6),
        drop_path_rate=0.1,
        init_cfg=[
            dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02,
                 bias=0.),
            dict(type='Constant', layer=['GroupNorm'], val=1., bias=0.)
        ]),
    neck=dict(in_channels=[128, 320, 512]))
