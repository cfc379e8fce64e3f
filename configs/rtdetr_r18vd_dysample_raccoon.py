# RT-DETR-R18vd + DySample up-sampling on the shipped raccoon data (CPU-sized).
#   python tools/train.py configs/rtdetr_r18vd_dysample_raccoon.py
_base_ = './rtdetr_r18vd_raccoon.py'

model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True, type='DySample', scale=2, style='lp', groups=4,
            dyscope=False)))
