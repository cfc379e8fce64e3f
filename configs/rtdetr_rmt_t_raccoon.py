# RT-DETR-RMT-T on the shipped raccoon data (1 class), CPU-sized like
# rtdetr_r18vd_raccoon.py (320 px, 100 queries, 3 decoder layers).
#   python tools/train.py configs/rtdetr_rmt_t_raccoon.py
_base_ = './rtdetr_r18vd_raccoon.py'

model = dict(
    backbone=dict(
        _delete_=True, type='RMT', arch='t', out_indices=(1, 2, 3),
        frozen_stages=-1, norm_eval=False),
    neck=dict(in_channels=[128, 256, 512]))
