# DEIM-RT-DETRv2-M (Huang et al., "DEIM: DETR with Improved Matching for Fast
# Convergence", CVPR 2025): RT-DETRv2-R34vd with DEIM's decoder options and
# MAL (_base_/models/deim.py), dense one-to-one matching and the
# flat-cosine schedule for 120 epochs, policy [4, 64, 117]
# (_base_/deim_coco_120e_setting.py, official deim_r34vd_120e_coco.yml); the
# backbone's weights at 1e-4.
# Official release (50.9 AP on COCO val2017), a Google Drive file
# (docs/deim.md says how to fetch one), converted on load:
#   https://drive.google.com/file/d/1O9RjZF6kdFWGv1Etn1Toml4r-YfdMDMM/view
#   python tools/test.py configs/deim_rtdetrv2_r34vd_120e_coco.py FILE.pth
#   python tools/train.py configs/deim_rtdetrv2_r34vd_120e_coco.py
_base_ = [
    './_base_/models/rtdetr_r34vd.py', './_base_/models/deim.py',
    './_base_/deim_coco_120e_setting.py'
]

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's).
model = _base_.deim_model
optim_wrapper = _base_.deim_r34_optim_wrapper
