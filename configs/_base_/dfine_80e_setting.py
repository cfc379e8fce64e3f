# D-FINE's recipe on COCO (_base_/dfine_coco_setting.py) with the 80-epoch
# schedule of the official L and X configs (dfine_hgnetv2_{l,x}_coco.yml):
# strong augmentations and multi-scale until epoch 72 (0-based).
_base_ = './dfine_coco_setting.py'

max_epochs = 80
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(_base_.param_scheduler[0], flat_epoch=max_epochs,
                        end=max_epochs)]
custom_hooks = [_base_.custom_hooks[0],
                dict(_base_.custom_hooks[1], stop_epoch=72)]
