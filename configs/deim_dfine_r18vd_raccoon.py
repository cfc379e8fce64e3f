# DEIM-D-FINE-R18vd on the shipped raccoon data, CPU-sized: the raccoon main
# job (rtdetr_r18vd_raccoon.py: 40 iterations per epoch at 320 px) with
# D-FINE's decoder and head and DEIM's changes (_base_/models/dfine.py
# `deim_dfine_model`; the same model as dfine_r18vd_raccoon.py plus DEIM's),
# trained as deim_rtdetrv2_r18vd_raccoon.py: 10 epochs (400 iterations),
# the mosaic's images resized to 160, the epoch policy [1, 6, 9] for the
# augmentations and the batch mixup, and the flat-cosine learning rate with
# a 40-iteration warm-up, flat until epoch 6, cosine to 0.5x by epoch 9.
# Its COCO sibling is deim_dfine_r18vd.py.
#   python tools/train.py configs/deim_dfine_r18vd_raccoon.py
_base_ = ['./rtdetr_r18vd_raccoon.py', './_base_/models/dfine.py']

# Merged into the inherited raccoon model, not a replacement
# (mmengine merges a dict into the base's); the batch augments keep the
# raccoon setting's sizes.
model = dict(
    _base_.deim_dfine_model,
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchRollMixup', prob=0.5, lambda_range=(0.45, 0.55)),
        dict(type='BatchSyncRandomResize', random_size_range=(256, 384),
             size_divisor=32, interval=1)
    ]))

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
