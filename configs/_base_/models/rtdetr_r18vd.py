# RT-DETR-R18vd (Zhao et al., CVPR 2024): ResNet-18-vd with trainable BN
# (stage widths 128/256/512 at strides 8/16/32), encoder expansion 0.5,
# 3 decoder layers (official rtdetr_r18vd_6x_coco: 20,184,464 parameters).
_base_ = './rtdetr_r50vd.py'

model = dict(
    backbone=dict(
        depth=18, frozen_stages=-1, norm_eval=False,
        init_cfg=dict(
            checkpoint='https://github.com/lyuwenyu/storage/releases/'
            'download/v0.1/ResNet18_vd_pretrained_from_paddle.pth')),
    neck=dict(in_channels=[128, 256, 512], expansion=0.5),
    decoder=dict(num_layers=3))
