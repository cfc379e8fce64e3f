# DEIM's recipe on COCO (_base_/deim_coco_setting.py) with the 120-epoch
# schedule of the official R18 and R34 configs (deim_r18vd_120e_coco.yml,
# deim_r34vd_120e_coco.yml): flat until epoch 64 (4 + 120 / 2), the last 3
# epochs without strong augmentations at the minimum learning rate, policy
# [4, 64, 117].
_base_ = './deim_coco_setting.py'

max_epochs = 120
flat_epoch = 64
no_aug_epoch = 3
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(_base_.param_scheduler[0], flat_epoch=flat_epoch,
                        no_aug_epoch=no_aug_epoch, end=max_epochs)]
custom_hooks = [
    _base_.custom_hooks[0],
    dict(_base_.custom_hooks[1], flat_epoch=flat_epoch,
         stop_epoch=max_epochs - no_aug_epoch)
]
