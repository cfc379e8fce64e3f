# RT-DETR-RIFormer-S12 on the shipped raccoon data (1 class, CPU-sized), the
# raccoon recipe of configs/rtdetr_r18vd_raccoon.py with RIFormer-S12 in place
# of ResNet-18-vd. Deploy config:
# configs/deploy/rtdetr_riformer_s12_raccoon_deploy.py.
_base_ = './rtdetr_r18vd_raccoon.py'

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
