# DEIM-D-FINE-X (Huang et al., CVPR 2025; official
# configs/deim_dfine/deim_hgnetv2_x_coco.yml): D-FINE-X
# (_base_/models/dfine_hgnetv2_x.py, `reg_scale: 8`) with DEIM's decoder
# activations and MAL (_base_/models/dfine.py `deim_dfine_model`), the
# backbone fully trained, dense one-to-one matching and the flat-cosine
# schedule (_base_/deim_dfine_58e_setting.py) for 58 epochs, flat until
# epoch 29, the last 8 without strong augmentations, policy [4, 29, 50],
# lr 5e-4 with the backbone at 5e-6, weight decay 1.25e-4.
# Official release (56.5 AP on COCO val2017), a Google Drive file
# (docs/deim.md says how to fetch one), converted on load:
#   https://drive.google.com/file/d/1dPtbgtGgq1Oa7k_LgH1GXPelg1IVeu0j/view
#   python tools/test.py configs/deim_dfine_hgnetv2_x_coco.py FILE.pth
#   python tools/train.py configs/deim_dfine_hgnetv2_x_coco.py
_base_ = [
    './_base_/models/dfine_hgnetv2_x.py', './_base_/models/dfine.py',
    './_base_/deim_dfine_58e_setting.py'
]

model = dict(_base_.deim_dfine_model,
             backbone=dict(_base_.deim_dfine_model.backbone,
                           norm_cfg=dict(type='BN', requires_grad=True)),
             decoder=dict(_base_.deim_dfine_model.decoder, reg_scale=8.0))
optim_wrapper = _base_.deim_dfine_x_optim_wrapper
