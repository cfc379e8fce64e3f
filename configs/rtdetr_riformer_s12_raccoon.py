# RT-DETR-RIFormer-S12 (_base_/models/rtdetr_riformer_s12.py) on the shipped
# raccoon data, CPU-sized (_base_/raccoon_setting.py).
#   python tools/train.py configs/rtdetr_riformer_s12_raccoon.py
# Deploy config: configs/deploy/rtdetr_riformer_s12_raccoon_deploy.py.
_base_ = [
    './_base_/models/rtdetr_riformer_s12.py', './_base_/raccoon_setting.py'
]

# Merged into the inherited model, not a replacement (mmengine merges a
# dict into the base's): only the raccoon setting's keys change.
model = _base_.raccoon_model
