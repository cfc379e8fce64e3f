# RT-DETR-L with DySample (Liu et al., ICCV 2023) as the hybrid encoder's
# top-down up-sampler: the seeds' Ultralytics `rtdetr-l-DySample`. Both x2
# up-samplings of the CCFM use DySample (lp style, 4 groups, static range
# factor), adding 2 x 8,224 parameters to RT-DETR-L.
_base_ = './rtdetr_hgnetv2_l_coco.py'

model = dict(
    neck=dict(
        upsample_cfg=dict(
            _delete_=True, type='DySample', scale=2, style='lp', groups=4,
            dyscope=False)))
