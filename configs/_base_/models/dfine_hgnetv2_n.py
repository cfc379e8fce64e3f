# D-FINE-N's backbone, encoder and decoder (official
# configs/deim_dfine/dfine_hgnetv2_n_coco.yml) on the RT-DETR model:
# HGNetv2-B0 with the learnable affine blocks and only its stride-16 and -32
# stages (`return_idx: [2, 3]`: two feature levels), D-FINE's hybrid encoder
# at width 128 (AIFI on the last level, FFN 512, expansion 0.34, depth 0.5)
# and 3 decoder layers of width 128 (FFN 512), whose levels need no input
# projection. Merged with _base_/models/dfine.py, after which the
# cross-attention gets its 6 points on each of the two levels
# (`num_points: [6, 6]`, configs/dfine_hgnetv2_n_coco.py).
_base_ = './dfine_hgnetv2_s.py'

model = dict(
    num_feature_levels=2,
    backbone=dict(out_indices=(2, 3)),
    neck=dict(
        in_channels=[512, 1024], feat_strides=[16, 32], hidden_dim=128,
        use_encoder_idx=[1], ffn_dim=512, expansion=0.34, depth_mult=0.5),
    decoder=dict(
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=128),
            cross_attn_cfg=dict(embed_dims=128, num_levels=2),
            ffn_cfg=dict(embed_dims=128, feedforward_channels=512))),
    bbox_head=dict(embed_dims=128))
