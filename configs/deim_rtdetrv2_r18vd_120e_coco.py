# DEIM-RT-DETRv2-S (Huang et al., "DEIM: DETR with Improved Matching for Fast
# Convergence", CVPR 2025): RT-DETRv2-R18vd (rtdetrv2_r18vd_120e_coco.py)
# with DEIM's decoder options and MAL (_base_/models/deim.py), trained with
# dense one-to-one matching and the flat-cosine schedule for 120 epochs,
# policy [4, 64, 117] (_base_/deim_coco_120e_setting.py), as the official
# deim_r18vd_120e_coco.yml (RT-DETRv2-R18vd: 47.9 AP in the DEIM paper's
# table).
# Official release (49.0 AP on COCO val2017), a Google Drive file
# (docs/deim.md says how to fetch one), converted on load:
#   https://drive.google.com/file/d/153_JKff6EpFgiLKaqkJsoDcLal_0ux_F/view
#   python tools/test.py configs/deim_rtdetrv2_r18vd_120e_coco.py FILE.pth
#   python tools/train.py configs/deim_rtdetrv2_r18vd_120e_coco.py
_base_ = [
    './_base_/models/rtdetr_r18vd.py', './_base_/models/deim.py',
    './_base_/deim_coco_120e_setting.py'
]

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's).
model = _base_.deim_model
optim_wrapper = _base_.deim_r18_optim_wrapper
