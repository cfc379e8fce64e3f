# RT-DETR with a MobileNetV4-HybridMedium backbone and the seed's BiFPN neck
# (see rtdetr_mnv4_conv_s_bifpn.py); only the backbone and the neck's input
# widths change.
_base_ = './rtdetr_mnv4_conv_s_bifpn.py'

model = dict(
    backbone=dict(arch='hybrid_medium'),
    neck=dict(in_channels=[48, 80, 160, 1280]))
