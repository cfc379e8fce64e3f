# RT-DETR with a RIFormer-S36 backbone (mmpretrain 1.2): layers [6, 6, 18, 6],
# widths [64, 128, 320, 512]; otherwise as configs/rtdetr_riformer_s12.py.
#   python tools/train.py configs/rtdetr_riformer_s36.py
# Deploy: tools/deploy/reparam_riformer.py, then
# configs/deploy/rtdetr_riformer_s36_deploy.py.
_base_ = './rtdetr_riformer_s12.py'

model = dict(
    backbone=dict(
        arch='s36',
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v1/'
            'riformer/riformer-s36_32xb128_in1k_20230406-fdfcd3b0.pth')))
