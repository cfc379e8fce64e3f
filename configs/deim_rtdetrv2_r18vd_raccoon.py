# DEIM-RT-DETRv2-R18vd on the shipped raccoon data, CPU-sized: the raccoon
# main job (rtdetr_r18vd_raccoon.py) with RT-DETRv2's decoder and DEIM's
# model changes (_base_/models/deim.py; the same model as
# rtdetrv2_r18vd_raccoon.py plus DEIM's), trained with DEIM's recipe scaled
# to the zoo's 10-epoch convergence runs (_base_/deim_raccoon_setting.py).
# Its COCO sibling is deim_rtdetrv2_r18vd_120e_coco.py.
#   python tools/train.py configs/deim_rtdetrv2_r18vd_raccoon.py
_base_ = ['./_base_/deim_raccoon_setting.py', './_base_/models/deim.py']

# Merged into the inherited raccoon model, not a replacement
# (mmengine merges a dict into the base's); the batch augments keep the
# raccoon setting's sizes.
model = dict(
    _base_.deim_model,
    data_preprocessor=dict(batch_augments=_base_.deim_raccoon_batch_augments))
