# DEIM-D-FINE-M (Huang et al., CVPR 2025; official
# configs/deim_dfine/deim_hgnetv2_m_coco.yml): D-FINE-M
# (_base_/models/dfine_hgnetv2_m.py) with DEIM's decoder activations and
# MAL (_base_/models/dfine.py `deim_dfine_model`), dense one-to-one
# matching and the flat-cosine schedule (_base_/deim_dfine_coco_setting.py)
# for 102 epochs, flat until epoch 49, policy [4, 49, 90], lr 4e-4 with the
# backbone's weights at 4e-5.
# Official release (52.7 AP on COCO val2017), a Google Drive file
# (docs/deim.md says how to fetch one), converted on load:
#   https://drive.google.com/file/d/18Lj2a6UN6k_n_UzqnJyiaiLGpDzQQit8/view
#   python tools/test.py configs/deim_dfine_hgnetv2_m_coco.py FILE.pth
#   python tools/train.py configs/deim_dfine_hgnetv2_m_coco.py
_base_ = [
    './_base_/models/dfine_hgnetv2_m.py', './_base_/models/dfine.py',
    './_base_/deim_dfine_coco_setting.py'
]

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's).
model = _base_.deim_dfine_model
optim_wrapper = _base_.deim_dfine_m_optim_wrapper

max_epochs = 102
flat_epoch = 49
no_aug_epoch = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(_base_.param_scheduler[0], flat_epoch=flat_epoch,
                        end=max_epochs)]
custom_hooks = [_base_.custom_hooks[0],
                dict(_base_.custom_hooks[1], flat_epoch=flat_epoch,
                     stop_epoch=max_epochs - no_aug_epoch)]
