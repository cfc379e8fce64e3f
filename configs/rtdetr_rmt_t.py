# RT-DETR with an RMT-T backbone (Fan et al., "RMT: Retentive Networks Meet
# Vision Transformers", CVPR 2024): Manhattan self-attention, decomposed in
# stages 1-2 and full in stages 3-4. Stage outputs at strides 8/16/32 feed
# the hybrid encoder. From scratch by default; for ImageNet weights add
#   init_cfg=dict(type='Pretrained', checkpoint='RMT-T.pth')
# to the backbone (official key layout is converted on load).
#   python tools/train.py configs/rtdetr_rmt_t.py
_base_ = './rtdetr_r50vd_coco.py'

model = dict(
    backbone=dict(
        _delete_=True, type='RMT', arch='t', out_indices=(1, 2, 3),
        frozen_stages=-1, norm_eval=False),
    neck=dict(in_channels=[128, 256, 512]))
