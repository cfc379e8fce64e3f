# D-FINE's training recipe on COCO (Peng et al., ICLR 2025; the official
# configs/deim_dfine/dfine_hgnetv2_*_coco.yml of ShihuaHuang95/DEIM with
# configs/base/{dfine_hgnetv2,optimizer,dataloader}.yml):
# - RT-DETR's augmentations (_base_/datasets/coco_detection.py) and the
#   multi-scale resize of the model base, both stopped from `stop_epoch` on
#   (the official `policy.epoch` and the collate function's `stop_epoch`;
#   StopAugmentationHook);
# - AdamW with the official parameter groups (_base_/schedules/
#   dfine_param_groups.py; here D-FINE-S's: lr 2e-4, the backbone at 1e-4,
#   weight decay 1e-4, none on the other norms and biases), gradient
#   clipping at 0.1;
# - the learning rate: `lrsheduler: flatcosine` with `lr_gamma: 1`,
#   `warmup_iter: 500`, `flat_epoch: 4000000`, `no_aug_epoch: 0`, i.e. a
#   quadratic warm-up over 500 iterations and then constant (FlatCosineLR
#   with the flat phase to the end; optimizer.yml's LinearWarmup and
#   MultiStepLR are not used when `lrsheduler` is set);
# - EMA 0.9999 with a 1000-step ramp (optimizer.yml `warmups: 1000`);
# - 32 images per batch (8 GPUs x 4).
# Its schedule is D-FINE-S's and -M's: 132 epochs, strong augmentations
# until epoch 120 (0-based). A config with another length overrides
# `max_epochs`, `train_cfg`, `param_scheduler` and `custom_hooks`, e.g.
# D-FINE-N (configs/dfine_hgnetv2_n_coco.py).
# Not expressible here (see docs/deim.md for the same points in DEIM):
# - at `stop_epoch` the official solver reloads its best checkpoint so far
#   (`best_stg1.pth`) and restarts the EMA at `ema_restart_decay`, lowered
#   by 1e-4 after each epoch without a new best: a model selection on the
#   validation set; here training goes on from the last epoch;
# - the official multi-scale sizes are `generate_scales(640,
#   base_size_repeat)`: 480-608 and 672-800 once each, 640
#   `base_size_repeat` times (S: 20, M: 6, L: 4, X: 3; N: none); mmdet's
#   BatchSyncRandomResize draws 480-800 uniformly;
# - the official runs use AMP (`use_amp: True`); pass --amp to
#   tools/train.py for that.
# A D-FINE config lists a model fragment, _base_/models/dfine.py and this
# file:
#   _base_ = ['./_base_/models/rtdetr_rmt_t.py', './_base_/models/dfine.py',
#             './_base_/dfine_coco_setting.py']
#   model = _base_.dfine_model
_base_ = [
    './datasets/coco_detection.py', './schedules/rtdetr_6x.py',
    './schedules/dfine_param_groups.py', './default_runtime.py'
]

optim_wrapper = _base_.dfine_s_optim_wrapper

max_epochs = 132
stop_epoch = 120
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='FlatCosineLR', warmup_iters=500, flat_epoch=max_epochs,
         no_aug_epoch=0, lr_gamma=1.0, begin=0, end=max_epochs,
         by_epoch=True, convert_to_iter_based=True)
]
custom_hooks = [
    dict(_base_.custom_hooks[0], gamma=1000),
    dict(type='StopAugmentationHook', stop_epoch=stop_epoch)
]
auto_scale_lr = dict(base_batch_size=32)
