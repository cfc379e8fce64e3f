# DEIM's recipe for D-FINE on COCO (Huang et al., CVPR 2025; the official
# configs/deim_dfine/deim_hgnetv2_*_coco.yml with configs/base/deim.yml):
# DEIM's dense one-to-one matching, epoch policy and flat-cosine learning
# rate (_base_/deim_coco_setting.py: mosaic and mixup from epoch 4 until
# flat_epoch, the other strong augmentations and the multi-scale resize
# until max_epochs - no_aug_epoch; quadratic warm-up over 2000 iterations,
# flat until flat_epoch, cosine down to 0.5x when the last no_aug_epoch
# epochs start) with D-FINE's optimizer groups (_base_/schedules/
# dfine_param_groups.py; here DEIM-D-FINE-S's: lr 4e-4, the backbone's
# weights at 2e-4, no weight decay on norms), its EMA ramp (1000 steps) and
# batch (32 images: 8 GPUs x 4).
# Its schedule is DEIM-D-FINE-S's: 132 epochs, flat_epoch 64, the last 12
# without strong augmentations, policy [4, 64, 120]. A config with another
# length overrides `max_epochs`, `train_cfg`, `param_scheduler` and
# `custom_hooks` (e.g. configs/deim_dfine_hgnetv2_m_coco.py). What the
# official solver does beyond this (the best-checkpoint restart at the stop
# epoch, the multi-scale sizes' weights): _base_/dfine_coco_setting.py.
# A DEIM-D-FINE config lists a model fragment, _base_/models/dfine.py and
# this file:
#   _base_ = ['./_base_/models/rtdetr_rmt_t.py', './_base_/models/dfine.py',
#             './_base_/deim_dfine_coco_setting.py']
#   model = _base_.deim_dfine_model
_base_ = ['./deim_coco_setting.py', './schedules/dfine_param_groups.py']

optim_wrapper = _base_.deim_dfine_s_optim_wrapper

max_epochs = 132
flat_epoch = 64
no_aug_epoch = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(_base_.param_scheduler[0], flat_epoch=flat_epoch,
                        no_aug_epoch=no_aug_epoch, end=max_epochs)]
custom_hooks = [
    dict(_base_.custom_hooks[0], gamma=1000),
    dict(_base_.custom_hooks[1], flat_epoch=flat_epoch,
         stop_epoch=max_epochs - no_aug_epoch)
]
auto_scale_lr = dict(base_batch_size=32)
