# DEIM's recipe for D-FINE on COCO (_base_/deim_dfine_coco_setting.py) with
# the 58-epoch schedule of the official L and X configs
# (deim_hgnetv2_{l,x}_coco.yml): flat until epoch 29, the last 8 epochs
# without strong augmentations, policy [4, 29, 50].
_base_ = './deim_dfine_coco_setting.py'

max_epochs = 58
flat_epoch = 29
no_aug_epoch = 8
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(_base_.param_scheduler[0], flat_epoch=flat_epoch,
                        no_aug_epoch=no_aug_epoch, end=max_epochs)]
custom_hooks = [_base_.custom_hooks[0],
                dict(_base_.custom_hooks[1], flat_epoch=flat_epoch,
                     stop_epoch=max_epochs - no_aug_epoch)]
