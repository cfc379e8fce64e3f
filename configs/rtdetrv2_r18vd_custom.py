# RT-DETRv2-R18vd fine-tuned on your own data: rtdetr_r18vd_custom.py with
# RT-DETRv2's decoder cross-attention (_base_/models/rtdetrv2.py), from the
# official RT-DETRv2-S COCO model (48.1 AP on COCO val2017). Edit data_root
# and data_format in rtdetr_r18vd_custom.py, or pass them:
#   python tools/train.py configs/rtdetrv2_r18vd_custom.py \
#       --cfg-options data_root=PATH data_format=yolo
_base_ = ['./rtdetr_r18vd_custom.py', './_base_/models/rtdetrv2.py']

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's): only the keys of `rtdetrv2_model` change.
model = _base_.rtdetrv2_model
load_from = 'https://github.com/lyuwenyu/storage/releases/download/v0.2/rtdetrv2_r18vd_120e_coco_rerun_48.1.pth'  # noqa: E501
