# RT-DETR with a MobileNetV4-HybridLarge backbone and the blog post's BiFPN
# neck: as configs/rtdetr_mnv4_conv_s_bifpn.py with another backbone (and the
# neck's input widths).
#   python tools/train.py configs/rtdetr_mnv4_hybrid_l_bifpn.py
_base_ = './rtdetr_mnv4_conv_s_bifpn.py'

model = dict(
    backbone=dict(
        arch='hybrid_large',
        init_cfg=dict(
            checkpoint='timm://mobilenetv4_hybrid_large.ix_e600_r384_in1k')),
    neck=dict(in_channels=[48, 96, 192, 1280]))
