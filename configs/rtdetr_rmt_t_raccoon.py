# RT-DETR-RMT-T (_base_/models/rtdetr_rmt_t.py) on the shipped raccoon data,
# CPU-sized (_base_/raccoon_setting.py).
#   python tools/train.py configs/rtdetr_rmt_t_raccoon.py
_base_ = ['./_base_/models/rtdetr_rmt_t.py', './_base_/raccoon_setting.py']

# Merged into the inherited model, not a replacement (mmengine merges a
# dict into the base's): only the raccoon setting's keys change.
model = _base_.raccoon_model
