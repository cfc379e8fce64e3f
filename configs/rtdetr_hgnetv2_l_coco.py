# RT-DETR-L: HGNetv2-L backbone (the seeds' Ultralytics `rtdetr-l`).
_base_ = './rtdetr_r50vd_coco.py'

model = dict(
    backbone=dict(
        _delete_=True, type='HGNetv2', arch='L', out_indices=(1, 2, 3),
        frozen_stages=0, norm_eval=True))
