# The robustness tests' training run (tests/test_robustness_training.py): the
# short raccoon run of the test suite made cheaper for repeated runs (96-128
# px, 30 queries, first 16 images = 8 iterations per pass), 4 iterations with
# checkpoints every 2, bad image files skipped with a logged message.
_base_ = './raccoon_short.py'

model = dict(
    num_queries=30,
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchSyncRandomResize', random_size_range=(96, 128),
             size_divisor=32, interval=1)
    ]),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=10)),
    test_cfg=dict(max_per_img=30))

train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='skip'),
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
    dict(type='Resize', scale=(128, 128), keep_ratio=False),
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
train_cfg = dict(max_iters=4)
default_hooks = dict(checkpoint=dict(interval=2))
