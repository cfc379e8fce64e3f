# RT-DETR with a RIFormer-M48 backbone (mmpretrain 1.2): layers [8, 8, 24, 8],
# widths [96, 192, 384, 768]; otherwise as configs/rtdetr_riformer_m36.py.
#   python tools/train.py configs/rtdetr_riformer_m48.py
# Deploy: tools/deploy/reparam_riformer.py, then
# configs/deploy/rtdetr_riformer_m48_deploy.py.
_base_ = './rtdetr_riformer_m36.py'

model = dict(
    backbone=dict(
        arch='m48',
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v1/'
            'riformer/riformer-m48_32xb128_in1k_20230406-2b9d1abf.pth')))
