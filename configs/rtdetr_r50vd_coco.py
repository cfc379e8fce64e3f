_base_ = [
    './_base_/models/rtdetr_r50vd.py', './_base_/datasets/coco_detection.py',
    './_base_/schedules/rtdetr_6x.py', './_base_/default_runtime.py'
]
