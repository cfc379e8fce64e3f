# DEIM-RT-DETRv2-M* (Huang et al., "DEIM: DETR with Improved Matching for Fast
# Convergence", CVPR 2025): RT-DETRv2-R50vd-M with 3 decoder layers (the
# official deim_r50vd_m_60e_coco.yml: `num_layers: 3`, `eval_idx: 2`),
# DEIM's decoder options and MAL (_base_/models/deim.py), dense one-to-one
# matching and the flat-cosine schedule for 60 epochs, policy [4, 34, 58]
# (_base_/deim_coco_setting.py); the backbone's weights at 2e-5.
# Official release (53.2 AP on COCO val2017), a Google Drive file
# (docs/deim.md says how to fetch one), converted on load:
#   https://drive.google.com/file/d/10dLuqdBZ6H5ip9BbBiE6S7ZcmHkRbD0E/view
#   python tools/test.py configs/deim_rtdetrv2_r50vd_m_60e_coco.py FILE.pth
#   python tools/train.py configs/deim_rtdetrv2_r50vd_m_60e_coco.py
_base_ = [
    './_base_/models/rtdetr_r50vd_m.py', './_base_/models/deim.py',
    './_base_/deim_coco_setting.py'
]

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's).
model = dict(_base_.deim_model,
             decoder=dict(_base_.deim_model.decoder, num_layers=3, eval_idx=2))
optim_wrapper = _base_.deim_r50_optim_wrapper
