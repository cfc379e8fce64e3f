# RT-DETR with a MobileNetV4-ConvMedium backbone and the blog post's BiFPN
# neck: as configs/rtdetr_mnv4_conv_s_bifpn.py with another backbone (and the
# neck's input widths).
#   python tools/train.py configs/rtdetr_mnv4_conv_m_bifpn.py
_base_ = './rtdetr_mnv4_conv_s_bifpn.py'

model = dict(
    backbone=dict(
        arch='conv_medium',
        init_cfg=dict(
            checkpoint='timm://mobilenetv4_conv_medium.e500_r256_in1k')),
    neck=dict(in_channels=[48, 80, 160, 1280]))
