# The seed's RT-DETR-MobileNetV4-ConvSmall-BiFPN (rtdetr_mnv4_conv_s_bifpn.py)
# on the shipped 1-class raccoon data, with the CPU-sized schedule of
# rtdetr_r18vd_raccoon.py (320 px, 100 queries, from scratch).
#   python tools/train.py configs/rtdetr_mnv4_conv_s_bifpn_raccoon.py
_base_ = './rtdetr_r18vd_raccoon.py'

model = dict(
    backbone=dict(
        _delete_=True, type='MobileNetV4', arch='conv_small',
        out_indices=(0, 1, 2, 3), last_convs=True),
    neck=dict(
        _delete_=True, type='BiFPNHybridEncoder',
        in_channels=[32, 64, 96, 1280], eval_spatial_size=(320, 320)),
    decoder=dict(num_layers=3))
