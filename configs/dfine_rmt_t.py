# D-FINE (Peng et al., ICLR 2025) on the zoo's RMT-T (rtdetr_rmt_t.py):
# D-FINE's FDR decoder, head and GO-LSD criterion (_base_/models/dfine.py),
# trained with D-FINE-S's recipe for 132 epochs, strong augmentations and
# multi-scale until epoch 120 (_base_/dfine_coco_setting.py); lr 2e-4 with the
# backbone at 1e-4 (D-FINE-S's groups).
#   python tools/train.py configs/dfine_rmt_t.py
_base_ = [
    './_base_/models/rtdetr_rmt_t.py', './_base_/models/dfine.py',
    './_base_/dfine_coco_setting.py'
]

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's).
model = _base_.dfine_model
