# RT-DETR-R34vd (_base_/models/rtdetr_r34vd.py) on COCO.
#   python tools/train.py configs/rtdetr_r34vd_coco.py
_base_ = [
    './_base_/models/rtdetr_r34vd.py', './_base_/datasets/coco_detection.py',
    './_base_/schedules/rtdetr_6x.py', './_base_/default_runtime.py'
]
