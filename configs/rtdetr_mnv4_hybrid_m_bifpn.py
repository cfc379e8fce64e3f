# RT-DETR with a MobileNetV4-HybridMedium backbone and the blog post's
# BiFPN neck: as configs/rtdetr_mnv4_conv_s_bifpn.py with another backbone
# (and the neck's input widths).
#   python tools/train.py configs/rtdetr_mnv4_hybrid_m_bifpn.py
_base_ = './rtdetr_mnv4_conv_s_bifpn.py'

model = dict(
    backbone=dict(
        arch='hybrid_medium',
        init_cfg=dict(
            checkpoint='timm://mobilenetv4_hybrid_medium.e200_r256_in12k_ft_in1k'  # noqa: E501
        )),
    neck=dict(in_channels=[48, 80, 160, 1280]))
