# D-FINE-X's backbone and encoder (official
# configs/deim_dfine/dfine_hgnetv2_x_coco.yml): D-FINE-L's model
# (dfine_hgnetv2_l.py) with HGNetv2-B5 and a wider hybrid encoder (hidden
# 384, AIFI FFN 2048), so the decoder (width 256) projects its 384-channel
# levels (1x1 conv + BN). Merged with _base_/models/dfine.py, after which
# the decoder's weighting function gets `reg_scale: 8`
# (configs/dfine_hgnetv2_x_coco.py).
_base_ = './dfine_hgnetv2_l.py'

model = dict(
    in_channels=[384, 384, 384],
    backbone=dict(
        arch='B5',
        init_cfg=dict(
            checkpoint='https://github.com/Peterande/storage/releases/'
            'download/dfinev1.0/PPHGNetV2_B5_stage1.pth')),
    neck=dict(hidden_dim=384, ffn_dim=2048))
