# RT-DETR with an RMT-T backbone (Fan et al., "RMT: Retentive Networks Meet
# Vision Transformers", CVPR 2024): Manhattan self-attention, decomposed in
# stages 1-2 and full in stages 3-4. Stage outputs at strides 8/16/32
# (widths 128/256/512) feed the hybrid encoder.
# ImageNet weights: the official RMT release (qhfan/RMT README) is published
# on Baidu Netdisk only, which cannot be downloaded automatically. Download
# RMT-T from https://pan.baidu.com/s/1uTSCuPqYRNmT4Zb4Je9BOw?pwd=vsyv to
# checkpoints/RMT-T.pth (its layout is converted on load), or train from
# scratch with --cfg-options model.backbone.init_cfg=None.
_base_ = './rtdetr_r50vd.py'

model = dict(
    backbone=dict(
        _delete_=True, type='RMT', arch='t', out_indices=(1, 2, 3),
        frozen_stages=-1, norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/RMT-T.pth')),
    neck=dict(in_channels=[128, 256, 512]))
