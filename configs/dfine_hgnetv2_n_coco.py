# D-FINE-N (Peng et al., ICLR 2025; official
# configs/deim_dfine/dfine_hgnetv2_n_coco.yml): HGNetv2-B0 on two levels
# (strides 16, 32), the width-128 encoder and 3-layer decoder
# (_base_/models/dfine_hgnetv2_n.py) with D-FINE's FDR decoder and head
# (_base_/models/dfine.py; 6 sampling points on each level), trained with
# D-FINE's recipe (_base_/dfine_coco_setting.py) for 160 epochs, strong
# augmentations until epoch 148, no multi-scale (`base_size_repeat: ~`),
# lr 8e-4 with the backbone at 4e-4, 128 images per batch (8 GPUs x 16).
# Official release (42.8 AP on COCO val2017), converted on load:
#   python tools/test.py configs/dfine_hgnetv2_n_coco.py \
#       https://github.com/Peterande/storage/releases/download/dfinev1.0/dfine_n_coco.pth
#   python tools/train.py configs/dfine_hgnetv2_n_coco.py
_base_ = [
    './_base_/models/dfine_hgnetv2_n.py', './_base_/models/dfine.py',
    './_base_/dfine_coco_setting.py'
]

_decoder = _base_.dfine_model.decoder
_attn = _decoder.layer_cfg.cross_attn_cfg
model = dict(
    _base_.dfine_model,
    data_preprocessor=dict(batch_augments=None),
    decoder=dict(_decoder, layer_cfg=dict(
        _decoder.layer_cfg, cross_attn_cfg=dict(_attn, num_points=[6, 6]))))
optim_wrapper = _base_.dfine_n_optim_wrapper
train_dataloader = dict(batch_size=16)
auto_scale_lr = dict(base_batch_size=128)

max_epochs = 160
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(_base_.param_scheduler[0], flat_epoch=max_epochs,
                        end=max_epochs)]
custom_hooks = [_base_.custom_hooks[0],
                dict(_base_.custom_hooks[1], stop_epoch=148)]
