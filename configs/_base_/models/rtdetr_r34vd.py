# RT-DETR-R34vd: rtdetr_r18vd.py with ResNet-34-vd and 4 decoder layers
# (encoder expansion 0.5 as R18vd; official rtdetr_r34vd_6x_coco, 31 M
# parameters).
_base_ = './rtdetr_r18vd.py'

model = dict(
    backbone=dict(
        depth=34,
        init_cfg=dict(
            checkpoint='https://github.com/lyuwenyu/storage/releases/'
            'download/v0.1/ResNet34_vd_pretrained_from_paddle.pth')),
    decoder=dict(num_layers=4))
