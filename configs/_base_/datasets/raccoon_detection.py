# The raccoon demo data shipped in data/raccoon (200 images, Pascal VOC,
# MIT licence), converted to COCO json on first use into the git-ignored
# data/raccoon/coco/ (160 train / 40 val, reproducible split). CPU-sized:
# 320x320 images (multi-scale 256-384 is set in ../raccoon_setting.py).
dataset_type = 'VOCAsCocoDataset'
data_root = 'data/raccoon/'
metainfo = dict(classes=('raccoon', ), palette=[(220, 20, 60)])
backend_args = None

train_pipeline = [
    dict(type='SafeLoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PhotoMetricDistortion'),
    dict(type='Expand', mean=[0, 0, 0], to_rgb=False, ratio_range=(1, 2),
         prob=0.5),
    dict(type='RandomApply', prob=0.5,
         transforms=[dict(type='MinIoURandomCrop',
                          min_ious=(0.3, 0.5, 0.7, 0.9),
                          min_crop_size=0.5)]),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=(320, 320), keep_ratio=False),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(320, 320), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
common = dict(
    type=dataset_type,
    data_root=data_root,
    voc_root='',
    metainfo=metainfo,
    data_prefix=dict(img='images/'),
    backend_args=backend_args)

train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        **common,
        ann_file='coco/train.json',
        filter_cfg=dict(filter_empty_gt=False, min_size=1),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        **common,
        ann_file='coco/val.json',
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'coco/val.json',
    metric='bbox',
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator
