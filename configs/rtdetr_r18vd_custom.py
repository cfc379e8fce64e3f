# RT-DETR-R18vd fine-tuned on your own data from the official COCO model
# (46.4 AP on COCO val2017, downloaded on first use). Edit the two lines
# below (or pass --cfg-options data_root=PATH data_format=coco); class names
# and num_classes are read from the data. Guide: docs/custom_data.md.
#   python tools/train.py configs/rtdetr_r18vd_custom.py
_base_ = [
    './_base_/models/rtdetr_r18vd.py',
    './_base_/datasets/custom_detection.py',
    './_base_/schedules/rtdetr_6x.py', './_base_/default_runtime.py'
]

data_root = 'data/custom/'  # your data set's folder
data_format = 'yolo'  # 'yolo' (data.yaml), 'coco' or 'voc'

runner_type = 'CustomDataRunner'  # applies the two lines above at run time
load_from = 'https://github.com/lyuwenyu/storage/releases/download/v0.1/rtdetr_r18vd_dec3_6x_coco_from_paddle.pth'  # noqa: E501
# load_from holds the whole model, so no separate ImageNet backbone download.
model = dict(backbone=dict(init_cfg=None))

train_cfg = dict(max_epochs=36, val_interval=1)
# A 3-epoch linear warm-up whatever the data set's size.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=True, begin=0, end=3,
         convert_to_iter_based=True)
]
default_hooks = dict(
    checkpoint=dict(max_keep_ckpts=2, save_best='coco/bbox_mAP'))
