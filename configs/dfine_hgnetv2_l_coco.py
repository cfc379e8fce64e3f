# D-FINE-L (Peng et al., ICLR 2025; official
# configs/deim_dfine/dfine_hgnetv2_l_coco.yml): HGNetv2-B4 (stem and
# BatchNorm frozen), D-FINE's encoder, the 6-layer FDR decoder
# (_base_/models/dfine_hgnetv2_l.py, _base_/models/dfine.py), trained with
# D-FINE's recipe (_base_/dfine_80e_setting.py) for 80 epochs, strong
# augmentations and multi-scale until epoch 72, lr 2.5e-4 with the backbone
# at 1.25e-5, weight decay 1.25e-4.
# Official release (54.0 AP on COCO val2017), converted on load:
#   python tools/test.py configs/dfine_hgnetv2_l_coco.py \
#       https://github.com/Peterande/storage/releases/download/dfinev1.0/dfine_l_coco.pth
#   python tools/train.py configs/dfine_hgnetv2_l_coco.py
_base_ = [
    './_base_/models/dfine_hgnetv2_l.py', './_base_/models/dfine.py',
    './_base_/dfine_80e_setting.py'
]

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's).
model = _base_.dfine_model
optim_wrapper = _base_.dfine_l_optim_wrapper
