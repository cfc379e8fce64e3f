# DEIM-D-FINE-R18vd on the shipped raccoon data, CPU-sized: the raccoon main
# job (rtdetr_r18vd_raccoon.py) with D-FINE's decoder and head and DEIM's
# changes (_base_/models/dfine.py `deim_dfine_model`; the same model as
# dfine_r18vd_raccoon.py plus DEIM's), trained as
# deim_rtdetrv2_r18vd_raccoon.py (_base_/deim_raccoon_setting.py).
# Its COCO sibling is deim_dfine_r18vd.py.
#   python tools/train.py configs/deim_dfine_r18vd_raccoon.py
_base_ = ['./_base_/deim_raccoon_setting.py', './_base_/models/dfine.py']

# Merged into the inherited raccoon model, not a replacement
# (mmengine merges a dict into the base's); the batch augments keep the
# raccoon setting's sizes.
model = dict(
    _base_.deim_dfine_model,
    data_preprocessor=dict(batch_augments=_base_.deim_raccoon_batch_augments))
