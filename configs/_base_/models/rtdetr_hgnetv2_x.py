# RT-DETR-X (Zhao et al., CVPR 2024; official rtdetr_hgnetv2_x_6x_coco,
# 54.8 AP): the HGNetv2-X backbone (stage widths 512/1024/2048 at strides
# 8/16/32, frozen stem, BN in eval mode) and a wider hybrid encoder (hidden
# 384, AIFI FFN 2048, so the decoder's input projections take 384 channels)
# on RT-DETR-L's model; the Ultralytics `rtdetr-x`
# (ultralytics/cfg/models/rt-detr/rtdetr-x.yaml).
# ImageNet weights: the PP-HGNetV2-X checkpoint that the official RT-DETR
# code (lyuwenyu/RT-DETR, rtdetrv2_pytorch/src/nn/backbone/hgnetv2.py)
# downloads; its layout is converted on load.
_base_ = './rtdetr_hgnetv2_l.py'

model = dict(
    in_channels=[384, 384, 384],
    backbone=dict(
        arch='X',
        init_cfg=dict(
            checkpoint='https://github.com/lyuwenyu/storage/releases/download/'
            'v0.1/PPHGNetV2_X_ssld_pretrained_from_paddle.pth')),
    neck=dict(hidden_dim=384, ffn_dim=2048))
