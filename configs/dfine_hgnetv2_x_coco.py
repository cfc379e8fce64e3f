# D-FINE-X (Peng et al., ICLR 2025; official
# configs/deim_dfine/dfine_hgnetv2_x_coco.yml): HGNetv2-B5 (stem and
# BatchNorm frozen), D-FINE's encoder at width 384, the 6-layer FDR decoder
# with `reg_scale: 8` (_base_/models/dfine_hgnetv2_x.py,
# _base_/models/dfine.py), trained with D-FINE's recipe
# (_base_/dfine_80e_setting.py) for 80 epochs, strong augmentations and
# multi-scale until epoch 72, lr 2.5e-4 with the backbone at 2.5e-6, weight
# decay 1.25e-4 (its EMA restart at epoch 72 at 0.9998 is not expressed:
# see the setting).
# Official release (55.8 AP on COCO val2017), converted on load:
#   python tools/test.py configs/dfine_hgnetv2_x_coco.py \
#       https://github.com/Peterande/storage/releases/download/dfinev1.0/dfine_x_coco.pth
#   python tools/train.py configs/dfine_hgnetv2_x_coco.py
_base_ = [
    './_base_/models/dfine_hgnetv2_x.py', './_base_/models/dfine.py',
    './_base_/dfine_80e_setting.py'
]

model = dict(_base_.dfine_model,
             decoder=dict(_base_.dfine_model.decoder, reg_scale=8.0))
optim_wrapper = _base_.dfine_x_optim_wrapper
