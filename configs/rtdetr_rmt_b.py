# RT-DETR with an RMT-B backbone (layer scale in stages 3-4).
#   python tools/train.py configs/rtdetr_rmt_b.py
_base_ = './rtdetr_r50vd_coco.py'

model = dict(
    backbone=dict(
        _delete_=True, type='RMT', arch='b', out_indices=(1, 2, 3),
        frozen_stages=-1, norm_eval=False),
    neck=dict(in_channels=[160, 320, 512]))
