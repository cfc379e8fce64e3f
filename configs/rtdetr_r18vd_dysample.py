# RT-DETR-R18vd with DySample (lp, 4 groups, static) replacing the nearest x2
# up-sampling in both top-down steps of the hybrid encoder (+2 x 8,224 params).
_base_ = './rtdetr_r18vd_coco.py'

model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True, type='DySample', scale=2, style='lp', groups=4,
            dyscope=False)))
