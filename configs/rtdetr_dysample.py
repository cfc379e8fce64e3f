# RT-DETR-L (configs/rtdetr_hgnetv2_l_coco.py) with DySample
# (_base_/models/dysample.py) as both x2 up-samplings of the hybrid encoder:
# the blog post's Ultralytics `rtdetr-l-DySample` (+2 x 8,224 parameters).
#   python tools/train.py configs/rtdetr_dysample.py
_base_ = ['./rtdetr_hgnetv2_l_coco.py', './_base_/models/dysample.py']

model = dict(neck=dict(upsample_cfg=dict(_delete_=True, **_base_.dysample)))
