# D-FINE-S (Peng et al., ICLR 2025; official
# configs/deim_dfine/dfine_hgnetv2_s_coco.yml): HGNetv2-B0, D-FINE's
# encoder, the 3-layer FDR decoder (_base_/models/dfine_hgnetv2_s.py,
# _base_/models/dfine.py), trained with D-FINE's recipe for 132 epochs,
# strong augmentations and multi-scale until epoch 120, lr 2e-4 with the
# backbone at 1e-4 (_base_/dfine_coco_setting.py).
# Official release (48.5 AP on COCO val2017), converted on load:
#   python tools/test.py configs/dfine_hgnetv2_s_coco.py \
#       https://github.com/Peterande/storage/releases/download/dfinev1.0/dfine_s_coco.pth
#   python tools/train.py configs/dfine_hgnetv2_s_coco.py
_base_ = [
    './_base_/models/dfine_hgnetv2_s.py', './_base_/models/dfine.py',
    './_base_/dfine_coco_setting.py'
]

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's).
model = _base_.dfine_model
