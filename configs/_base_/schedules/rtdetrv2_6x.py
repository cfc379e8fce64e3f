# The RT-DETRv2 schedule of rtdetrv2_r50vd_6x_coco, rtdetrv2_r101vd_6x_coco
# (official rtdetrv2_pytorch): the RT-DETR schedule (rtdetr_6x.py) for 72
# epochs, with RT-DETRv2's stop epoch: from epoch 71 (0-based; the last 1) the
# strong augmentations and the multi-scale resize stop (StopAugmentationHook,
# rtdetr_zoo.engine).
_base_ = './rtdetr_6x.py'

custom_hooks = _base_.custom_hooks + [
    dict(type='StopAugmentationHook', stop_epoch=71)
]
