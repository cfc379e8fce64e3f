# DEIM (Huang et al., "DEIM: DETR with Improved Matching for Fast
# Convergence", CVPR 2025; official ShihuaHuang95/DEIM,
# configs/base/rt_deim.yml) on any RT-DETR model: RT-DETRv2's decoder
# (_base_/models/rtdetrv2.py) with DEIM's three architecture options, the
# matchability-aware loss (MAL, weights mal 1, L1 5, GIoU 2), the backbone's
# BatchNorm trained (`freeze_at: -1`, `freeze_norm: False`), and the batch
# mixup of its dense one-to-one matching in front of the multi-scale resize
# (the data side and the schedule: _base_/deim_coco_setting.py). A config
# lists an RT-DETR model fragment and this fragment and merges the change:
#   _base_ = ['./_base_/models/rtdetr_rmt_t.py', './_base_/models/deim.py',
#             './_base_/deim_coco_setting.py']
#   model = _base_.deim_model
# The official DEIM checkpoints have RT-DETRv2's key names plus the 3-layer
# query position MLP, and load as they are.
_base_ = './rtdetrv2.py'

# DEIM's `activation: silu` (decoder FFN) and `mlp_act: silu` (query
# position MLP, encoder and decoder box heads).
silu = dict(type='SiLU')
_v2_decoder = _base_.rtdetrv2_model.decoder

deim_model = dict(
    _base_.rtdetrv2_model,
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchRollMixup', prob=0.5, lambda_range=(0.45, 0.55)),
        dict(type='BatchSyncRandomResize', random_size_range=(480, 800),
             size_divisor=32, interval=1)
    ]),
    backbone=dict(frozen_stages=-1, norm_eval=False),
    # `query_pos_method: as_reg`: MLP(4, 256, 256, 3 layers).
    decoder=dict(
        _v2_decoder,
        query_pos_method='as_reg',
        mlp_act_cfg=silu,
        layer_cfg=dict(_v2_decoder.layer_cfg, ffn_cfg=dict(act_cfg=silu))),
    bbox_head=dict(
        mlp_act_cfg=silu,
        criterion=dict(losses=dict(
            _delete_=True,
            mal=dict(type='MatchabilityAwareLoss', gamma=1.5,
                     loss_weight=1.0),
            bbox=dict(type='MatchedL1Loss', loss_weight=5.0),
            iou=dict(type='MatchedGIoULoss', loss_weight=2.0)))))
