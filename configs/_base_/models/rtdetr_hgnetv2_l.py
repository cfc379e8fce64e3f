# RT-DETR-L (Zhao et al., CVPR 2024): the HGNetv2-L backbone (stage widths
# 512/1024/2048 at strides 8/16/32, frozen stem, BN in eval mode) on the
# R50vd model's encoder and decoder; Ultralytics' `rtdetr-l`.
# ImageNet weights: the PP-HGNetV2-L checkpoint that the official RT-DETR
# code (lyuwenyu/RT-DETR, rtdetrv2_pytorch/src/nn/backbone/hgnetv2.py)
# downloads; its layout is converted on load.
_base_ = './rtdetr_r50vd.py'

model = dict(
    backbone=dict(
        _delete_=True, type='HGNetv2', arch='L', out_indices=(1, 2, 3),
        frozen_stages=0, norm_eval=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/lyuwenyu/storage/releases/download/'
            'v0.1/PPHGNetV2_L_ssld_pretrained_from_paddle.pth')))
