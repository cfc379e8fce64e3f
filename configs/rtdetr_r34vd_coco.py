# RT-DETR-R34vd: configs/rtdetr_r18vd_coco.py with ResNet-34-vd and 4 decoder
# layers (encoder expansion 0.5 as R18vd).
#   python tools/train.py configs/rtdetr_r34vd_coco.py
_base_ = './rtdetr_r18vd_coco.py'

model = dict(
    backbone=dict(
        depth=34,
        init_cfg=dict(
            checkpoint='https://github.com/lyuwenyu/storage/releases/'
            'download/v0.1/ResNet34_vd_pretrained_from_paddle.pth')),
    decoder=dict(num_layers=4))
