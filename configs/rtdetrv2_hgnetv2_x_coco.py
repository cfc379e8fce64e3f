# RT-DETRv2-X on HGNetv2-X (as the official rtdetrv2_hgnetv2_x_6x_coco):
# rtdetr_hgnetv2_x_coco.py (model and schedule) with RT-DETRv2's decoder
# cross-attention (_base_/models/rtdetrv2.py).
#   python tools/train.py configs/rtdetrv2_hgnetv2_x_coco.py
_base_ = ['./rtdetr_hgnetv2_x_coco.py', './_base_/models/rtdetrv2.py']

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's): only the keys of `rtdetrv2_model` change.
model = _base_.rtdetrv2_model
# RT-DETRv2's stop epoch for the 72-epoch schedule (rtdetrv2_6x.py).
custom_hooks = _base_.custom_hooks + [
    dict(type='StopAugmentationHook', stop_epoch=71)
]
