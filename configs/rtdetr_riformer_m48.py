# RT-DETR with a RIFormer-M48 backbone (mmpretrain 1.2): layers [8, 8, 24, 8],
# widths [96, 192, 384, 768]; otherwise as configs/rtdetr_riformer_s12.py.
# Deploy: tools/deploy/reparam_riformer.py, then
# configs/deploy/rtdetr_riformer_m48_deploy.py.
_base_ = './rtdetr_riformer_s12.py'

model = dict(
    backbone=dict(arch='m48'), neck=dict(in_channels=[192, 384, 768]))
