# RT-DETR with a RIFormer-M36 backbone (mmpretrain 1.2): layers [6, 6, 18, 6],
# widths [96, 192, 384, 768]; otherwise as configs/rtdetr_riformer_s12.py.
#   python tools/train.py configs/rtdetr_riformer_m36.py
# Deploy: tools/deploy/reparam_riformer.py, then
# configs/deploy/rtdetr_riformer_m36_deploy.py.
_base_ = './rtdetr_riformer_s12.py'

model = dict(
    backbone=dict(
        arch='m36',
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v1/'
            'riformer/riformer-m36_32xb128_in1k_20230406-2fcb9d9b.pth')),
    neck=dict(in_channels=[192, 384, 768]))
