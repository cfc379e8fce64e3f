# RT-DETR with a RIFormer-S24 backbone (mmpretrain 1.2): layers [4, 4, 12, 4],
# widths [64, 128, 320, 512]; otherwise as configs/rtdetr_riformer_s12.py.
#   python tools/train.py configs/rtdetr_riformer_s24.py
# Deploy: tools/deploy/reparam_riformer.py, then
# configs/deploy/rtdetr_riformer_s24_deploy.py.
_base_ = './rtdetr_riformer_s12.py'

model = dict(
    backbone=dict(
        arch='s24',
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v1/'
            'riformer/riformer-s24_32xb128_in1k_20230406-fdab072a.pth')))
