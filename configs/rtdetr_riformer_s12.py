# RT-DETR-RIFormer-S12 (_base_/models/rtdetr_riformer_s12.py) on COCO.
#   python tools/train.py configs/rtdetr_riformer_s12.py
# Deploy: tools/deploy/reparam_riformer.py, then
# configs/deploy/rtdetr_riformer_s12_deploy.py.
_base_ = [
    './_base_/models/rtdetr_riformer_s12.py',
    './_base_/datasets/coco_detection.py', './_base_/schedules/rtdetr_6x.py',
    './_base_/default_runtime.py'
]
