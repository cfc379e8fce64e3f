# RT-DETR with an RMT-S backbone (decomposed MaSA in stages 1-3, full in 4).
#   python tools/train.py configs/rtdetr_rmt_s.py
_base_ = './rtdetr_r50vd_coco.py'

model = dict(
    backbone=dict(
        _delete_=True, type='RMT', arch='s', out_indices=(1, 2, 3),
        frozen_stages=-1, norm_eval=False),
    neck=dict(in_channels=[128, 256, 512]))
