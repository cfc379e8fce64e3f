# Inference-time RIFormer-M48 (token mixers folded into the norms); load a
# checkpoint converted by tools/deploy/reparam_riformer.py.
_base_ = '../rtdetr_riformer_m48.py'

model = dict(backbone=dict(deploy=True))
