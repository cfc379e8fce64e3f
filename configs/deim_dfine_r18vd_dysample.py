# DEIM-D-FINE (Huang et al., CVPR 2025) on the zoo's R18-vd with DySample in
# the encoder (rtdetr_r18vd_dysample.py): D-FINE's FDR decoder and head with
# DEIM's activations and MAL (_base_/models/dfine.py `deim_dfine_model`), dense
# one-to-one matching and the flat-cosine schedule for 132 epochs, policy [4,
# 64, 120] (_base_/deim_dfine_coco_setting.py); lr 4e-4 with the backbone at
# the full learning rate (as its DEIM twin; DEIM-D-FINE-S's groups otherwise).
#   python tools/train.py configs/deim_dfine_r18vd_dysample.py
_base_ = [
    './_base_/models/rtdetr_r18vd_dysample.py', './_base_/models/dfine.py',
    './_base_/deim_dfine_coco_setting.py'
]

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's).
model = _base_.deim_dfine_model
optim_wrapper = _base_.deim_dfine_s_full_lr_optim_wrapper
