# RT-DETR-R101vd: ResNet-101-vd, hybrid encoder of width 384 (FFN 2048),
# 6 decoder layers (official rtdetr_r101vd_6x_coco, 76 M parameters).
_base_ = './rtdetr_r50vd.py'

model = dict(
    in_channels=[384, 384, 384],
    backbone=dict(
        depth=101,
        init_cfg=dict(
            checkpoint='https://github.com/lyuwenyu/storage/releases/'
            'download/v0.1/ResNet101_vd_ssld_pretrained_from_paddle.pth')),
    neck=dict(hidden_dim=384, ffn_dim=2048))
