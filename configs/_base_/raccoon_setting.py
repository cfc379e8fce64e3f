# The raccoon setting: the shipped raccoon data (1 class, 320 px), sized for
# a CPU: 100 queries, 3 decoder layers, 20 epochs of 40 iterations, short
# warm-up. No pretrained weights can be downloaded here, so the backbone
# trains from scratch at the full learning rate (set `load_from` / the
# backbone's `init_cfg` to start from ImageNet or COCO weights instead).
# A raccoon config lists a model fragment and this file as its bases and
# merges the setting's model changes into the fragment's model:
#   _base_ = ['./_base_/models/rtdetr_r18vd.py', './_base_/raccoon_setting.py']
#   model = _base_.raccoon_model
# (mmengine forbids a key, here `model`, in two bases of one config.)
_base_ = [
    './datasets/raccoon_detection.py', './schedules/rtdetr_6x.py',
    './default_runtime.py'
]

raccoon_model = dict(
    num_queries=100,
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchSyncRandomResize', random_size_range=(256, 384),
             size_divisor=32, interval=1)
    ]),
    backbone=dict(init_cfg=None),
    neck=dict(eval_spatial_size=(320, 320)),
    decoder=dict(num_layers=3),
    bbox_head=dict(num_classes=1),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=50)),
    test_cfg=dict(max_per_img=100))

max_epochs = 20
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=40)
]
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.001,
         gamma=200, update_buffers=True, priority=49)
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=5, max_keep_ckpts=2, save_best='coco/bbox_mAP'))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
