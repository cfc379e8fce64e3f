# D-FINE (Peng et al., "D-FINE: Redefine Regression Task of DETRs as
# Fine-grained Distribution Refinement", ICLR 2025; official
# Peterande/D-FINE, the same code in ShihuaHuang95/DEIM,
# configs/base/dfine_hgnetv2.yml) on any RT-DETR model: the detector
# `DFINE`, the FDR decoder (per-edge distributions over reg_max + 1 = 33
# bins, refined through the layers; the gate after cross-attention; D-FINE's
# `num_points [3, 6, 3]` without value / output projections), the head with
# the pre-refinement box head and the LQE, and the criterion with GO-LSD:
# VFL 1, L1 5, GIoU 2, fine-grained localisation (FGL) 0.15, decoupled
# distillation (DDF) 1.5, the box and localisation terms on the union of
# every layer's matches. RT-DETRv2's denoising boxes.
# A config lists an RT-DETR model fragment and this fragment and merges the
# change:
#   _base_ = ['./_base_/models/rtdetr_rmt_t.py', './_base_/models/dfine.py',
#             './_base_/dfine_coco_setting.py']
#   model = _base_.dfine_model          # or _base_.deim_dfine_model
# `deim_dfine_model` is DEIM-D-FINE (Huang et al., CVPR 2025,
# configs/base/deim.yml): SiLU in the decoder's FFN, LQE and MLPs, and MAL
# (gamma 1.5) in place of VFL; the dense one-to-one matching is the data
# side (_base_/deim_coco_setting.py).
# The official D-FINE and DEIM-D-FINE checkpoints load as they are.
_localization_losses = dict(
    bbox=dict(type='MatchedL1Loss', loss_weight=5.0),
    iou=dict(type='MatchedGIoULoss', loss_weight=2.0),
    fgl=dict(type='FineGrainedLocalizationLoss', loss_weight=0.15),
    ddf=dict(type='DecoupledDistillationFocalLoss', loss_weight=1.5,
             temperature=5.0))
_decoder = dict(
    reg_max=32,
    reg_scale=4.0,
    layer_cfg=dict(
        cross_attn_cfg=dict(
            type='FDRDeformableAttention',
            num_points=[3, 6, 3],
            offset_scale=0.5,
            method='default')))
_criterion = dict(type='DFINECriterion', union_matching=True)

dfine_model = dict(
    type='DFINE',
    dn_cfg=dict(box_logit_eps=1e-5, pad_with_empty_box=True),
    decoder=_decoder,
    bbox_head=dict(
        type='DFINEHead',
        reg_max=32,
        criterion=dict(
            _criterion,
            losses=dict(
                _delete_=True,
                cls=dict(type='RTDETRVarifocalLoss', alpha=0.75, gamma=2.0,
                         loss_weight=1.0),
                **_localization_losses))))

silu = dict(type='SiLU')
deim_dfine_model = dict(
    dfine_model,
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchRollMixup', prob=0.5, lambda_range=(0.45, 0.55)),
        dict(type='BatchSyncRandomResize', random_size_range=(480, 800),
             size_divisor=32, interval=1)
    ]),
    backbone=dict(frozen_stages=-1, norm_eval=False),
    decoder=dict(
        _decoder,
        mlp_act_cfg=silu,
        layer_cfg=dict(_decoder['layer_cfg'], ffn_cfg=dict(act_cfg=silu))),
    bbox_head=dict(
        type='DFINEHead',
        reg_max=32,
        mlp_act_cfg=silu,
        criterion=dict(
            _criterion,
            losses=dict(
                _delete_=True,
                mal=dict(type='MatchabilityAwareLoss', gamma=1.5,
                         loss_weight=1.0),
                **_localization_losses))))
