# RT-DETR-BHViT (configs/rtdetr_bhvit.py's backbone and neck) on the shipped
# raccoon data (1 class, CPU-sized): the recipe of
# configs/rtdetr_r18vd_raccoon.py with CCRINet-l in place of ResNet-18-vd.
#   python tools/train.py configs/rtdetr_bhvit_raccoon.py
_base_ = './rtdetr_r18vd_raccoon.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='CCRINet',
        arch='l',
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_eval=False),
    neck=dict(in_channels=[256, 512, 512], depth_mult=2 / 3))
