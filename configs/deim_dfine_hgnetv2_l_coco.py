# DEIM-D-FINE-L (Huang et al., CVPR 2025; official
# configs/deim_dfine/deim_hgnetv2_l_coco.yml): D-FINE-L
# (_base_/models/dfine_hgnetv2_l.py) with DEIM's decoder activations and
# MAL (_base_/models/dfine.py `deim_dfine_model`), the backbone fully
# trained (DEIM's `freeze_at: -1`, `freeze_norm: False`), dense one-to-one
# matching and the flat-cosine schedule (_base_/deim_dfine_58e_setting.py)
# for 58 epochs, flat until epoch 29, the last 8 without strong
# augmentations, policy [4, 29, 50], lr 5e-4 with the backbone at 2.5e-5,
# weight decay 1.25e-4.
# Official release (54.7 AP on COCO val2017), a Google Drive file
# (docs/deim.md says how to fetch one), converted on load:
#   https://drive.google.com/file/d/1PIRf02XkrA2xAD3wEiKE2FaamZgSGTAr/view
#   python tools/test.py configs/deim_dfine_hgnetv2_l_coco.py FILE.pth
#   python tools/train.py configs/deim_dfine_hgnetv2_l_coco.py
_base_ = [
    './_base_/models/dfine_hgnetv2_l.py', './_base_/models/dfine.py',
    './_base_/deim_dfine_58e_setting.py'
]

model = dict(_base_.deim_dfine_model,
             backbone=dict(_base_.deim_dfine_model.backbone,
                           norm_cfg=dict(type='BN', requires_grad=True)))
optim_wrapper = _base_.deim_dfine_l_optim_wrapper
