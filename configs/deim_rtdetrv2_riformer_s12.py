# DEIM (Huang et al., CVPR 2025) on the zoo's RIFormer-S12
# (rtdetrv2_riformer_s12.py):
# DEIM's decoder options and MAL (_base_/models/deim.py), dense one-to-one
# matching and the flat-cosine schedule for 60 epochs, policy [4, 34, 58]
# (_base_/deim_coco_setting.py); the backbone's weights at a tenth of the
# learning rate (DEIM-R50's groups).
#   python tools/train.py configs/deim_rtdetrv2_riformer_s12.py
_base_ = [
    './_base_/models/rtdetr_riformer_s12.py', './_base_/models/deim.py',
    './_base_/deim_coco_setting.py'
]

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's).
model = _base_.deim_model
