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
#
# Denoising as the official code builds it: noised boxes clamped at 1e-5
# before the logit, padding slots with an empty box (mmdet: 1e-3 and the
# box (0.5, 0.5, 0.5, 0.5)); with these the losses equal the official
# RTDETRCriterionv2's (tests/test_rtdetrv2_equivalence.py).
rtdetrv2_model = dict(
    dn_cfg=dict(box_logit_eps=1e-5, pad_with_empty_box=True),
    decoder=dict(
        layer_cfg=dict(
            cross_attn_cfg=dict(
                type='MultiScaleDeformableAttentionV2',
                num_points=[4, 4, 4],
                offset_scale=0.5,
                method='default'))))
