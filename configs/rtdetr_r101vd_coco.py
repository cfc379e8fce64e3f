# RT-DETR-R101vd (_base_/models/rtdetr_r101vd.py) on COCO.
#   python tools/train.py configs/rtdetr_r101vd_coco.py
_base_ = [
    './_base_/models/rtdetr_r101vd.py',
    './_base_/datasets/coco_detection.py', './_base_/schedules/rtdetr_6x.py',
    './_base_/default_runtime.py'
]
