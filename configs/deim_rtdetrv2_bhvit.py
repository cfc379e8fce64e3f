# DEIM (Huang et al., CVPR 2025) on the zoo's BHViT's CCRI backbone
# (rtdetrv2_bhvit.py):
# DEIM's decoder options and MAL (_base_/models/deim.py), dense one-to-one
# matching and the flat-cosine schedule for 60 epochs, policy [4, 34, 58]
# (_base_/deim_coco_setting.py); the backbone at the full learning rate, as its
# RT-DETRv2 twin (DEIM-R18's groups).
#   python tools/train.py configs/deim_rtdetrv2_bhvit.py
_base_ = [
    './_base_/models/rtdetr_bhvit.py', './_base_/models/deim.py',
    './_base_/deim_coco_setting.py'
]

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's).
model = _base_.deim_model
optim_wrapper = _base_.deim_r18_optim_wrapper
