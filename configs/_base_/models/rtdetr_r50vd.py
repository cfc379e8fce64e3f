# RT-DETR-R50vd (Zhao et al., CVPR 2024): ResNet-50-vd, hybrid encoder,
# 6-layer decoder, 300 queries, 100 denoising queries. The backbone starts
# from the ImageNet weights the official RT-DETR code downloads for PResNet
# (lyuwenyu/RT-DETR, src/nn/backbone/presnet.py; its layout is converted on
# load).
custom_imports = dict(imports=['rtdetr_zoo'], allow_failed_imports=False)

model = dict(
    type='RTDETR',
    num_queries=300,
    num_feature_levels=3,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[0.0, 0.0, 0.0],
        std=[255.0, 255.0, 255.0],
        bgr_to_rgb=True,
        pad_size_divisor=32,
        # Multi-scale training as RT-DETR: each batch is resized to a random
        # multiple of 32 in [480, 800], synchronised across ranks.
        batch_augments=[
            dict(type='BatchSyncRandomResize', random_size_range=(480, 800),
                 size_divisor=32, interval=1)
        ]),
    backbone=dict(
        type='ResNetVd',
        depth=50,
        out_indices=(1, 2, 3),
        frozen_stages=0,
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/lyuwenyu/storage/releases/download/'
            'v0.1/ResNet50_vd_ssld_v2_pretrained_from_paddle.pth')),
    neck=dict(
        type='HybridEncoder',
        in_channels=[512, 1024, 2048],
        hidden_dim=256,
        use_encoder_idx=[2],
        num_encoder_layers=1,
        num_heads=8,
        ffn_dim=1024,
        dropout=0.0,
        expansion=1.0,
        depth_mult=1.0,
        eval_spatial_size=(640, 640),
        upsample_cfg=dict(type='nearest', scale_factor=2)),
    decoder=dict(
        num_layers=6,
        eval_idx=-1,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.0),
            cross_attn_cfg=dict(
                embed_dims=256, num_levels=3, num_heads=8, num_points=4,
                dropout=0.0, batch_first=True),
            ffn_cfg=dict(
                embed_dims=256, feedforward_channels=1024, ffn_drop=0.0))),
    bbox_head=dict(
        type='RTDETRHead',
        num_classes=80,
        # The matcher and the losses of every decoder layer, the encoder's
        # top-k and the denoising queries, computed for the whole batch.
        criterion=dict(
            type='RTDETRCriterion',
            matcher=dict(
                type='BatchedHungarianMatcher',
                match_costs=[
                    dict(type='BatchedFocalLossCost', weight=2.0),
                    dict(type='BatchedBBoxL1Cost', weight=5.0,
                         box_format='xywh'),
                    dict(type='BatchedIoUCost', iou_mode='giou', weight=2.0)
                ]),
            losses=dict(
                cls=dict(type='RTDETRVarifocalLoss', alpha=0.75, gamma=2.0,
                         loss_weight=1.0),
                bbox=dict(type='MatchedL1Loss', loss_weight=5.0),
                iou=dict(type='MatchedGIoULoss', loss_weight=2.0)),
            sync_cls_avg_factor=True)),
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=100)),
    test_cfg=dict(max_per_img=300))
