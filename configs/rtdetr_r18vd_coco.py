# RT-DETR-R18vd: ResNet-18-vd (trainable BN), encoder expansion 0.5,
# 3 decoder layers (official rtdetr_r18vd_6x_coco: 20,184,464 parameters).
_base_ = './rtdetr_r50vd_coco.py'

model = dict(
    backbone=dict(depth=18, frozen_stages=-1, norm_eval=False),
    neck=dict(in_channels=[128, 256, 512], expansion=0.5),
    decoder=dict(num_layers=3))
