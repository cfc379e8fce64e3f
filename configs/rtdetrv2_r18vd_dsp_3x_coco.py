# RT-DETRv2-S_dsp (Lv et al., arXiv 2407.17140): rtdetr_r18vd.py
# with RT-DETRv2's cross-attention (_base_/models/rtdetrv2_dsp.py) on COCO.
# Official release (47.4 AP on COCO val2017), converted on load:
#   python tools/test.py configs/rtdetrv2_r18vd_dsp_3x_coco.py \
#       https://github.com/lyuwenyu/storage/releases/download/v0.1/rtdetrv2_r18vd_dsp_3x_coco.pth
#   python tools/train.py configs/rtdetrv2_r18vd_dsp_3x_coco.py
_base_ = [
    './_base_/models/rtdetr_r18vd.py', './_base_/models/rtdetrv2_dsp.py',
    './_base_/datasets/coco_detection.py',
    './_base_/schedules/rtdetrv2_3x.py',
    './_base_/schedules/rtdetrv2_param_groups.py',
    './_base_/default_runtime.py'
]

# Merged into the inherited dicts, not replacements (mmengine merges a dict
# into the base's): the RT-DETR model changes only in the keys of
# `rtdetrv2_model` and `data_preprocessor`, the schedule's AdamW gets
# the official groups.
# No multi-scale training (the official R18 configs: `scales: ~`).
model = dict(_base_.rtdetrv2_model,
             data_preprocessor=dict(batch_augments=None))
optim_wrapper = _base_.rtdetrv2_r18_optim_wrapper

# Training fine-tunes the bilinear model (the official config's
# `tuning`); the sampling offsets stay frozen.
load_from = 'https://github.com/lyuwenyu/storage/releases/download/v0.1/rtdetrv2_r18vd_120e_coco.pth'  # noqa: E501
