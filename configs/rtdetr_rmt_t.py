# RT-DETR-RMT-T (_base_/models/rtdetr_rmt_t.py) on COCO.
#   python tools/train.py configs/rtdetr_rmt_t.py
_base_ = [
    './_base_/models/rtdetr_rmt_t.py', './_base_/datasets/coco_detection.py',
    './_base_/schedules/rtdetr_6x.py', './_base_/default_runtime.py'
]
