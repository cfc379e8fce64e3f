# The real short training run of the test suite: RT-DETR-R18vd on the
# shipped raccoon data (the first 16 training images, so that 30 iterations
# of 2 images at 256-384 px see each image a few times), with checkpoints
# every 10 iterations.
_base_ = '../../configs/rtdetr_r18vd_raccoon.py'

loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(**loader, dataset=dict(indices=16))
val_dataloader = loader
test_dataloader = loader

train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=30,
    val_interval=1000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.2, by_epoch=False, begin=0, end=5)
]
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(by_epoch=False, interval=10, save_best=None,
                    max_keep_ckpts=5))
log_processor = dict(by_epoch=False, window_size=1)
randomness = dict(seed=0, deterministic=True)

# No validation during the run (tools/test.py evaluates afterwards).
val_cfg = None
val_dataloader = None
val_evaluator = None
