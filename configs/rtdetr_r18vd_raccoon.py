# RT-DETR-R18vd (_base_/models/rtdetr_r18vd.py) on the shipped raccoon data,
# CPU-sized (_base_/raccoon_setting.py).
#   python tools/train.py configs/rtdetr_r18vd_raccoon.py
_base_ = ['./_base_/models/rtdetr_r18vd.py', './_base_/raccoon_setting.py']

# Merged into the inherited model, not a replacement (mmengine merges a
# dict into the base's): only the raccoon setting's keys change.
model = _base_.raccoon_model
