# RT-DETR-R18vd with DySample replacing the nearest x2 up-sampling in both
# top-down steps of the hybrid encoder (+2 x 8,224 parameters).
_base_ = ['./rtdetr_r18vd.py', './dysample.py']

model = dict(neck=dict(upsample_cfg=dict(_delete_=True, **_base_.dysample)))
