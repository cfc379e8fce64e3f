# RT-DETRv2 with discrete sampling ("dsp", official cross_attn_method
# discrete): rtdetrv2.py whose cross-attention reads the nearest pixel by
# index instead of grid_sample (no GridSample node in an exported graph);
# its sampling offsets are frozen. The official dsp models are fine-tuned
# from the bilinear ones (their configs' `load_from`). Used as rtdetrv2.py:
#   model = _base_.rtdetrv2_model
_base_ = './rtdetrv2.py'

rtdetrv2_model = dict(
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(method='discrete'))))
