# RT-DETRv2 (Lv et al., arXiv 2407.17140) from any RT-DETR model: the
# decoder's cross-attention becomes MultiScaleDeformableAttentionV2 with 4
# points on each of the 3 levels, offsets scaled by 1/4 and 0.5 and bilinear
# sampling (official rtdetrv2_pytorch: num_points [4, 4, 4],
# cross_attn_method default). With 4 points on every level its parameters
# are RT-DETR's plus one buffer, so the official v2 weights and any RT-DETR
# model's weights load. A config lists an RT-DETR model (fragment or config)
# and this fragment as bases and merges the change:
#   _base_ = ['./rtdetr_rmt_t.py', './_base_/models/rtdetrv2.py']
#   model = _base_.rtdetrv2_model
# (mmengine forbids a key, here `model`, in two bases of one config.)
rtdetrv2_model = dict(
    decoder=dict(
        layer_cfg=dict(
            cross_attn_cfg=dict(
                type='MultiScaleDeformableAttentionV2',
                num_points=[4, 4, 4],
                offset_scale=0.5,
                method='default'))))
