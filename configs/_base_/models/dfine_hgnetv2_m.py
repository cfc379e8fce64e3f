# D-FINE-M's backbone, encoder and decoder depth (official
# configs/deim_dfine/dfine_hgnetv2_m_coco.yml) on the RT-DETR model:
# HGNetv2-B2 with the learnable affine blocks, D-FINE's hybrid encoder
# (hidden 256, expansion 1.0, depth 0.67) and 4 decoder layers. Merged with
# _base_/models/dfine.py (`dfine_model` or `deim_dfine_model`).
_base_ = './dfine_hgnetv2_s.py'

model = dict(
    backbone=dict(
        arch='B2',
        init_cfg=dict(
            checkpoint='https://github.com/Peterande/storage/releases/'
            'download/dfinev1.0/PPHGNetV2_B2_stage1.pth')),
    neck=dict(in_channels=[384, 768, 1536], expansion=1.0, depth_mult=0.67),
    decoder=dict(num_layers=4))
