# D-FINE-M (Peng et al., ICLR 2025; official
# configs/deim_dfine/dfine_hgnetv2_m_coco.yml): HGNetv2-B2, D-FINE's
# encoder (depth 0.67), the 4-layer FDR decoder
# (_base_/models/dfine_hgnetv2_m.py, _base_/models/dfine.py), trained with
# D-FINE's recipe for 132 epochs, strong augmentations and multi-scale
# until epoch 120 (_base_/dfine_coco_setting.py), lr 2e-4 with the backbone
# at 2e-5.
# Official release (52.3 AP on COCO val2017), converted on load:
#   python tools/test.py configs/dfine_hgnetv2_m_coco.py \
#       https://github.com/Peterande/storage/releases/download/dfinev1.0/dfine_m_coco.pth
#   python tools/train.py configs/dfine_hgnetv2_m_coco.py
_base_ = [
    './_base_/models/dfine_hgnetv2_m.py', './_base_/models/dfine.py',
    './_base_/dfine_coco_setting.py'
]

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's).
model = _base_.dfine_model
optim_wrapper = _base_.dfine_m_optim_wrapper
