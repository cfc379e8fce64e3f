# DEIM-D-FINE-S (Huang et al., CVPR 2025; official
# configs/deim_dfine/deim_hgnetv2_s_coco.yml):
# D-FINE-S (_base_/models/dfine_hgnetv2_s.py) with DEIM's decoder
# activations and MAL (_base_/models/dfine.py `deim_dfine_model`), dense
# one-to-one matching and the flat-cosine schedule for 132 epochs, flat
# until epoch 64, policy [4, 64, 120], lr 4e-4 with the backbone's weights
# at 2e-4 (_base_/deim_dfine_coco_setting.py).
# Official release (49.0 AP on COCO val2017), a Google Drive file
# (docs/deim.md says how to fetch one), converted on load:
#   https://drive.google.com/file/d/1tB8gVJNrfb6dhFvoHJECKOF5VpkthhfC/view
#   python tools/test.py configs/deim_dfine_hgnetv2_s_coco.py FILE.pth
#   python tools/train.py configs/deim_dfine_hgnetv2_s_coco.py
_base_ = [
    './_base_/models/dfine_hgnetv2_s.py', './_base_/models/dfine.py',
    './_base_/deim_dfine_coco_setting.py'
]

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's).
model = _base_.deim_dfine_model
