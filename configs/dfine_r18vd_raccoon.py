# D-FINE-R18vd on the shipped raccoon data, CPU-sized: the main job
# (rtdetr_r18vd_raccoon.py) with D-FINE's FDR decoder, head and GO-LSD
# criterion (_base_/models/dfine.py), in the raccoon setting as
# rtdetrv2_r18vd_raccoon.py; its COCO sibling is dfine_r18vd.py.
#   python tools/train.py configs/dfine_r18vd_raccoon.py
_base_ = ['./rtdetr_r18vd_raccoon.py', './_base_/models/dfine.py']

# Merged into the inherited raccoon model, not a replacement (mmengine
# merges a dict into the base's): only the keys of `dfine_model` change.
model = _base_.dfine_model
