# Inference-time RIFormer-S12 raccoon detector; load a checkpoint converted by
# tools/deploy/reparam_riformer.py.
_base_ = '../rtdetr_riformer_s12_raccoon.py'

model = dict(backbone=dict(deploy=True))
