# RT-DETR-R34vd: ResNet-34-vd, encoder expansion 0.5, 4 decoder layers.
_base_ = './rtdetr_r50vd_coco.py'

model = dict(
    backbone=dict(depth=34, frozen_stages=-1, norm_eval=False),
    neck=dict(in_channels=[128, 256, 512], expansion=0.5),
    decoder=dict(num_layers=4))
