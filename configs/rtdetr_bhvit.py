# RT-DETR-BHViT (_base_/models/rtdetr_bhvit.py) on COCO. No ImageNet weights
# exist for its backbone, so it trains from scratch at the full learning rate.
#   python tools/train.py configs/rtdetr_bhvit.py
_base_ = [
    './_base_/models/rtdetr_bhvit.py', './_base_/datasets/coco_detection.py',
    './_base_/schedules/rtdetr_6x.py', './_base_/default_runtime.py'
]

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)}))
