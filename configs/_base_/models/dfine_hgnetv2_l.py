# D-FINE-L's backbone, encoder and decoder (official
# configs/deim_dfine/dfine_hgnetv2_l_coco.yml) on the RT-DETR model:
# HGNetv2-B4 without the learnable affines, its stem frozen
# (`freeze_stem_only: True`, `freeze_at: 0`) and every BatchNorm frozen
# (`freeze_norm: True`: eval mode and no gradient; the official
# FrozenBatchNorm2d holds them as buffers, so its parameter count leaves
# them out), D-FINE's hybrid encoder (hidden 256, expansion 1.0, depth 1.0)
# and 6 decoder layers. Merged with _base_/models/dfine.py (`dfine_model`;
# `deim_dfine_model` trains the backbone's BatchNorm, which needs
# `norm_cfg` back: configs/deim_dfine_hgnetv2_l_coco.py).
_base_ = './dfine_hgnetv2_s.py'

model = dict(
    backbone=dict(
        arch='B4', use_lab=False, frozen_stages=0, norm_eval=True,
        norm_cfg=dict(type='BN', requires_grad=False),
        init_cfg=dict(
            checkpoint='https://github.com/Peterande/storage/releases/'
            'download/dfinev1.0/PPHGNetV2_B4_stage1.pth')),
    neck=dict(in_channels=[512, 1024, 2048], expansion=1.0, depth_mult=1.0),
    decoder=dict(num_layers=6))
