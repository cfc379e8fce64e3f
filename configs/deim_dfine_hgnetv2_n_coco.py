# DEIM-D-FINE-N (Huang et al., CVPR 2025; official
# configs/deim_dfine/deim_hgnetv2_n_coco.yml): D-FINE-N
# (_base_/models/dfine_hgnetv2_n.py, 6 sampling points on each of its two
# levels) with DEIM's decoder activations and MAL (_base_/models/dfine.py
# `deim_dfine_model`), dense one-to-one matching
# (_base_/deim_dfine_coco_setting.py) for 160 epochs, policy [4, 78, 148],
# the batch mixup but no multi-scale (`base_size_repeat: ~`), lr 8e-4 with
# the backbone at 4e-4, constant after the warm-up (`lr_gamma: 1.0`; the
# official `flat_epoch: 7800` lies past the end), 128 images per batch
# (8 GPUs x 16).
# Official release (43.0 AP on COCO val2017), a Google Drive file
# (docs/deim.md says how to fetch one), converted on load:
#   https://drive.google.com/file/d/1ZPEhiU9nhW4M5jLnYOFwTSLQC1Ugf62e/view
#   python tools/test.py configs/deim_dfine_hgnetv2_n_coco.py FILE.pth
#   python tools/train.py configs/deim_dfine_hgnetv2_n_coco.py
_base_ = [
    './_base_/models/dfine_hgnetv2_n.py', './_base_/models/dfine.py',
    './_base_/deim_dfine_coco_setting.py'
]

_decoder = _base_.deim_dfine_model.decoder
_attn = _decoder.layer_cfg.cross_attn_cfg
model = dict(
    _base_.deim_dfine_model,
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchRollMixup', prob=0.5, lambda_range=(0.45, 0.55))
    ]),
    decoder=dict(_decoder, layer_cfg=dict(
        _decoder.layer_cfg, cross_attn_cfg=dict(_attn, num_points=[6, 6]))))
optim_wrapper = _base_.deim_dfine_n_optim_wrapper
train_dataloader = dict(batch_size=16)
auto_scale_lr = dict(base_batch_size=128)

max_epochs = 160
no_aug_epoch = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(_base_.param_scheduler[0],
                        flat_epoch=max_epochs - no_aug_epoch,
                        no_aug_epoch=no_aug_epoch, lr_gamma=1.0,
                        end=max_epochs)]
custom_hooks = [_base_.custom_hooks[0],
                dict(_base_.custom_hooks[1], flat_epoch=78,
                     stop_epoch=max_epochs - no_aug_epoch)]
