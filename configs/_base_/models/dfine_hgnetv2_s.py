# D-FINE-S's backbone, encoder and decoder depth (official
# configs/dfine/dfine_hgnetv2_s_coco.yml) on the RT-DETR model: HGNetv2-B0
# with the learnable affine blocks, D-FINE's hybrid encoder (RepNCSPELAN4
# fusion blocks, SCDown down-sampling, lateral convs without activation;
# hidden 256, expansion 0.5, depth 0.34) and 3 decoder layers. Merged with
# _base_/models/dfine.py (`dfine_model` or `deim_dfine_model`).
_base_ = './rtdetr_r50vd.py'

model = dict(
    backbone=dict(
        _delete_=True, type='HGNetv2', arch='B0', use_lab=True,
        out_indices=(1, 2, 3), frozen_stages=-1, norm_eval=False,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/Peterande/storage/releases/'
            'download/dfinev1.0/PPHGNetV2_B0_stage1.pth')),
    neck=dict(
        in_channels=[256, 512, 1024], expansion=0.5, depth_mult=0.34,
        fusion_block_cfg=dict(type='RepNCSPELAN4'),
        downsample_cfg=dict(type='SCDown'), lateral_act=False),
    decoder=dict(num_layers=3))
