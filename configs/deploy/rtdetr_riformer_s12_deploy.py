# Inference-time RIFormer-S12 (token mixers folded into the norms); load a
# checkpoint converted by tools/deploy/reparam_riformer.py.
_base_ = '../rtdetr_riformer_s12.py'

model = dict(backbone=dict(deploy=True))
