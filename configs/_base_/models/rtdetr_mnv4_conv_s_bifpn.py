# RT-DETR with a MobileNetV4-ConvSmall backbone and a BiFPN neck: the blog
# post's Ultralytics `rtdetr-MobileNetv4-BiFPN` (P2-P5 backbone features,
# widths 32/64/96/1280, AIFI on P5, BiFPN weighted fusion + RepC3 top-down
# and bottom-up, a 3-layer decoder on P3-P5). MobileNetV4: Qin et al., ECCV
# 2024; BiFPN: Tan et al., CVPR 2020.
# ImageNet weights: timm's `mobilenetv4_conv_small.e2400_r224_in1k`
# (timm://NAME reads https://huggingface.co/timm/NAME/resolve/main/
# pytorch_model.bin; timm's key names are converted on load).
_base_ = './rtdetr_r50vd.py'

model = dict(
    backbone=dict(
        _delete_=True, type='MobileNetV4', arch='conv_small',
        out_indices=(0, 1, 2, 3), last_convs=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='timm://mobilenetv4_conv_small.e2400_r224_in1k')),
    neck=dict(
        _delete_=True, type='BiFPNHybridEncoder',
        in_channels=[32, 64, 96, 1280], eval_spatial_size=(640, 640)),
    decoder=dict(num_layers=3))
