# RT-DETR-R18vd (_base_/models/rtdetr_r18vd.py) on the shipped raccoon data,
# CPU-sized (_base_/raccoon_setting.py).
#   python tools/train.py configs/rtdetr_r18vd_raccoon.py
_base_ = ['./_base_/models/rtdetr_r18vd.py', './_base_/raccoon_setting.py']

model = _base_.raccoon_model
