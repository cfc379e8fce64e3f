# The RT-DETRv2 schedule of rtdetrv2_r18vd_120e_coco, rtdetrv2_r34vd_120e_coco
# (official rtdetrv2_pytorch): the RT-DETR schedule (rtdetr_6x.py) for 120
# epochs, with RT-DETRv2's stop epoch: from epoch 117 (0-based; the last 3) the
# strong augmentations and the multi-scale resize stop (StopAugmentationHook,
# rtdetr_zoo.engine).
_base_ = './rtdetr_6x.py'

max_epochs = 120
train_cfg = dict(max_epochs=max_epochs)
custom_hooks = _base_.custom_hooks + [
    dict(type='StopAugmentationHook', stop_epoch=117)
]
