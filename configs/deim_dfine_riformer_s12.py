# DEIM-D-FINE (Huang et al., CVPR 2025) on the zoo's RIFormer-S12
# (rtdetr_riformer_s12.py): D-FINE's FDR decoder and head with DEIM's
# activations and MAL (_base_/models/dfine.py `deim_dfine_model`), dense
# one-to-one matching and the flat-cosine schedule for 132 epochs, policy [4,
# 64, 120] (_base_/deim_dfine_coco_setting.py); lr 4e-4 with the backbone's
# weights at 2e-4 (DEIM-D-FINE-S's groups).
#   python tools/train.py configs/deim_dfine_riformer_s12.py
_base_ = [
    './_base_/models/rtdetr_riformer_s12.py', './_base_/models/dfine.py',
    './_base_/deim_dfine_coco_setting.py'
]

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's).
model = _base_.deim_dfine_model
