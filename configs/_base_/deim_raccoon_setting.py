# DEIM's recipe on the shipped raccoon data, CPU-sized: the raccoon main job
# (../rtdetr_r18vd_raccoon.py: 40 iterations per epoch at 320 px) trained for
# the 10 epochs (400 iterations) of the zoo's convergence runs
# (docs/model_zoo.md) with DEIM's recipe scaled to them: the mosaic's images
# resized to 160 (320 on COCO's 640), the epoch policy [1, 6, 9] (COCO: [4,
# 4 + epochs / 2, epochs - no_aug_epoch]) for the augmentations and the
# batch mixup, and the flat-cosine learning rate with a 40-iteration
# warm-up, flat until epoch 6, cosine to 0.5x by epoch 9.
# A DEIM raccoon config lists this file and a DEIM model fragment and
# merges the fragment's model with the batch augments below (they keep the
# raccoon setting's sizes):
#   _base_ = ['./_base_/deim_raccoon_setting.py', './_base_/models/deim.py']
#   model = dict(_base_.deim_model,
#                data_preprocessor=dict(
#                    batch_augments=_base_.deim_raccoon_batch_augments))
_base_ = '../rtdetr_r18vd_raccoon.py'

deim_raccoon_batch_augments = [
    dict(type='BatchRollMixup', prob=0.5, lambda_range=(0.45, 0.55)),
    dict(type='BatchSyncRandomResize', random_size_range=(256, 384),
         size_divisor=32, interval=1)
]

deim_train_pipeline = [
    dict(type='DEIMMosaic', img_scale=160, rotation_range=10,
         translation_range=(0.1, 0.1), scaling_range=(0.5, 1.5),
         fill_value=0, prob=0.5),
    dict(type='PhotoMetricDistortion'),
    # Mosaic and zoom-out / IoU crop never apply to the same sample.
    dict(type='SkipAfterMosaic', transforms=_base_.train_pipeline[3:5]),
] + _base_.train_pipeline[5:]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='MultiImageMixDataset',
        dataset=dict(
            _base_.train_dataloader.dataset,
            pipeline=_base_.train_pipeline[:2]),
        pipeline=deim_train_pipeline))

max_epochs = 10
flat_epoch = 6
no_aug_epoch = 1
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='FlatCosineLR', warmup_iters=40, flat_epoch=flat_epoch,
         no_aug_epoch=no_aug_epoch, lr_gamma=0.5, begin=0, end=max_epochs,
         by_epoch=True, convert_to_iter_based=True)
]
custom_hooks = _base_.custom_hooks + [
    dict(type='StopAugmentationHook', start_epoch=1, flat_epoch=flat_epoch,
         stop_epoch=max_epochs - no_aug_epoch)
]
