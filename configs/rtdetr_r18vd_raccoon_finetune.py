# RT-DETR-R18vd fine-tuned on the shipped raccoon data (1 class, CPU-sized)
# from the official COCO checkpoint (46.4 AP on COCO val2017, downloaded on
# first use). The official layout is converted on load; the class heads and
# the denoising label embedding (80 classes there) are re-initialised, one
# log line says which. Offline: --cfg-options load_from=LOCAL_FILE.
#   python tools/train.py configs/rtdetr_r18vd_raccoon_finetune.py
_base_ = './rtdetr_r18vd_raccoon.py'

load_from = 'https://github.com/lyuwenyu/storage/releases/download/v0.1/rtdetr_r18vd_dec3_6x_coco_from_paddle.pth'  # noqa: E501

train_cfg = dict(max_epochs=10, val_interval=2)
optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
