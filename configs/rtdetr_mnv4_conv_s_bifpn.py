# RT-DETR with a MobileNetV4-ConvSmall backbone and a BiFPN neck: the seed's
# Ultralytics `rtdetr-MobileNetv4-BiFPN` (P2-P5 backbone features, AIFI on
# P5, BiFPN weighted fusion + RepC3 top-down and bottom-up, a 3-layer
# decoder on P3-P5). MobileNetV4: Qin et al., ECCV 2024; BiFPN: Tan et al.,
# CVPR 2020.
# Trains from scratch by default (as the seed). To start from timm ImageNet
# weights, download `mobilenetv4_conv_small` (e.g. its pytorch_model.bin or
# model.safetensors converted with torch.save) and set
#   model.backbone.init_cfg = dict(type='Pretrained', checkpoint=PATH)
# (timm's key names are converted on load), plus norm_eval=True as RT-DETR.
_base_ = './rtdetr_r50vd_coco.py'

model = dict(
    backbone=dict(
        _delete_=True, type='MobileNetV4', arch='conv_small',
        out_indices=(0, 1, 2, 3), last_convs=True),
    neck=dict(
        _delete_=True, type='BiFPNHybridEncoder',
        in_channels=[32, 64, 96, 1280], eval_spatial_size=(640, 640)),
    decoder=dict(num_layers=3))
