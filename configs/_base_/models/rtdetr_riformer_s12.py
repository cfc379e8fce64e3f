# RT-DETR with a RIFormer-S12 backbone (Wang et al., CVPR 2023), reused
# from mmpretrain 1.2. S12: layers [2, 2, 6, 2], widths [64, 128, 320, 512];
# stages 2-4 (out_indices 1/2/3, strides 8/16/32) feed the encoder.
# ImageNet weights: mmpretrain's riformer-s12_32xb128_in1k (its metafile);
# the classifier's `backbone.` keys are loaded.
# Deploy: tools/deploy/reparam_riformer.py, then the
# matching configs/deploy/*_deploy.py (backbone.deploy=True).
_base_ = './rtdetr_r50vd.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RIFormer',
        arch='s12',
        out_indices=(1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmclassification/v1/'
            'riformer/riformer-s12_32xb128_in1k_20230406-6741ce71.pth',
            prefix='backbone.')),
    neck=dict(in_channels=[128, 320, 512]))
