# RT-DETR-L: HGNetv2-L backbone (_base_/models/rtdetr_hgnetv2_l.py) on COCO.
#   python tools/train.py configs/rtdetr_hgnetv2_l_coco.py
_base_ = [
    './_base_/models/rtdetr_hgnetv2_l.py',
    './_base_/datasets/coco_detection.py', './_base_/schedules/rtdetr_6x.py',
    './_base_/default_runtime.py'
]
