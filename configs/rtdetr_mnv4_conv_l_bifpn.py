# RT-DETR with a MobileNetV4-ConvLarge backbone and the seed's BiFPN neck
# (see rtdetr_mnv4_conv_s_bifpn.py); only the backbone and the neck's input
# widths change.
_base_ = './rtdetr_mnv4_conv_s_bifpn.py'

model = dict(
    backbone=dict(arch='conv_large'),
    neck=dict(in_channels=[48, 96, 192, 1280]))
