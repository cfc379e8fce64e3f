# RT-DETRv2-R18vd on the shipped raccoon data, CPU-sized: the main job
# (rtdetr_r18vd_raccoon.py) with RT-DETRv2's decoder cross-attention
# (_base_/models/rtdetrv2.py); its COCO sibling is
# rtdetrv2_r18vd_120e_coco.py.
#   python tools/train.py configs/rtdetrv2_r18vd_raccoon.py
_base_ = ['./rtdetr_r18vd_raccoon.py', './_base_/models/rtdetrv2.py']

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's): only the keys of `rtdetrv2_model` change.
model = _base_.rtdetrv2_model
