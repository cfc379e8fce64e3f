# RT-DETR-R18vd + DySample (_base_/models/rtdetr_r18vd_dysample.py) on the
# shipped raccoon data, CPU-sized (_base_/raccoon_setting.py).
#   python tools/train.py configs/rtdetr_r18vd_dysample_raccoon.py
_base_ = [
    './_base_/models/rtdetr_r18vd_dysample.py', './_base_/raccoon_setting.py'
]

model = _base_.raccoon_model
