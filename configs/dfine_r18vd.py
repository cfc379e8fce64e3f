# D-FINE (Peng et al., ICLR 2025) on the zoo's R18-vd (rtdetr_r18vd_coco.py):
# D-FINE's FDR decoder, head and GO-LSD criterion (_base_/models/dfine.py),
# trained with D-FINE-S's recipe for 132 epochs, strong augmentations and
# multi-scale until epoch 120 (_base_/dfine_coco_setting.py); lr 2e-4 with the
# backbone at the full learning rate (as its RT-DETRv2 and DEIM twins;
# D-FINE-S's groups otherwise).
#   python tools/train.py configs/dfine_r18vd.py
_base_ = [
    './_base_/models/rtdetr_r18vd.py', './_base_/models/dfine.py',
    './_base_/dfine_coco_setting.py'
]

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's).
model = _base_.dfine_model
optim_wrapper = _base_.dfine_s_full_lr_optim_wrapper
