# DEIM's training recipe on COCO (Huang et al., CVPR 2025; official
# ShihuaHuang95/DEIM, configs/base/rt_deim.yml and configs/deim_rtdetrv2/):
# - dense one-to-one matching, the data side: DEIM's mosaic (4 images, each
#   resized to 320 on its shorter side, one random affine: rotation 10,
#   translation 0.1, scale 0.5-1.5) on half of the samples, in place of the
#   zoom-out and IoU crop, and the batch mixup of the data pre-processor
#   (_base_/models/deim.py);
# - the epoch policy [4, flat_epoch, stop_epoch] (StopAugmentationHook): no
#   strong augmentation before epoch 4, mosaic and mixup until flat_epoch,
#   the other strong augmentations and the multi-scale resize until
#   stop_epoch;
# - the flat-cosine learning rate (FlatCosineLR): quadratic warm-up over
#   2000 iterations, flat until flat_epoch, cosine down to 0.5x by the
#   last no_aug_epoch epochs, then constant; AdamW lr 2e-4, the backbone's
#   weights at 2e-5, no weight decay on norms (_base_/schedules/
#   deim_param_groups.py: DEIM-R50's groups);
# - the EMA and gradient clipping of RT-DETR (rtdetr_6x.py).
# Its schedule is the 60-epoch one of the R50 / R101 / R50-M configs
# (flat_epoch = 4 + 60 / 2); a config with another length overrides the
# epochs, `param_scheduler` and `custom_hooks` (as
# _base_/deim_coco_120e_setting.py does). A DEIM config lists a model fragment,
# _base_/models/deim.py and this file:
#   _base_ = ['./_base_/models/rtdetr_rmt_t.py', './_base_/models/deim.py',
#             './_base_/deim_coco_setting.py']
#   model = _base_.deim_model
_base_ = [
    './datasets/coco_detection.py', './schedules/rtdetr_6x.py',
    './schedules/deim_param_groups.py', './default_runtime.py'
]

# The dataset loads images and boxes; the mosaic wrapper draws the other
# three images of a mosaic from it and runs the augmentations.
deim_train_pipeline = [
    dict(type='DEIMMosaic', img_scale=320, rotation_range=10,
         translation_range=(0.1, 0.1), scaling_range=(0.5, 1.5),
         fill_value=0, prob=0.5),
    dict(type='PhotoMetricDistortion'),
    # Mosaic and zoom-out / IoU crop never apply to the same sample.
    dict(type='SkipAfterMosaic', transforms=[
        dict(type='Expand', mean=[0, 0, 0], to_rgb=False,
             ratio_range=(1, 4), prob=0.5),
        dict(type='RandomApply', prob=0.8,
             transforms=[dict(type='MinIoURandomCrop',
                              min_ious=(0.1, 0.3, 0.5, 0.7, 0.9),
                              min_crop_size=0.3)])
    ]),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=(640, 640), keep_ratio=False),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='MultiImageMixDataset',
        dataset=dict(
            _base_.train_dataloader.dataset,
            pipeline=_base_.train_pipeline[:2]),
        pipeline=deim_train_pipeline))

optim_wrapper = _base_.deim_r50_optim_wrapper

max_epochs = 60
flat_epoch = 34
no_aug_epoch = 2
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='FlatCosineLR', warmup_iters=2000, flat_epoch=flat_epoch,
         no_aug_epoch=no_aug_epoch, lr_gamma=0.5, begin=0, end=max_epochs,
         by_epoch=True, convert_to_iter_based=True)
]
custom_hooks = _base_.custom_hooks + [
    dict(type='StopAugmentationHook', start_epoch=4, flat_epoch=flat_epoch,
         stop_epoch=max_epochs - no_aug_epoch)
]
