# RT-DETRv2-M_dsp (Lv et al., arXiv 2407.17140): rtdetr_r50vd_m.py
# with RT-DETRv2's cross-attention (_base_/models/rtdetrv2_dsp.py) on COCO.
# Official release (51.4 AP on COCO val2017), converted on load:
#   python tools/test.py configs/rtdetrv2_r50vd_m_dsp_3x_coco.py \
#       https://github.com/lyuwenyu/storage/releases/download/v0.1/rtdetrv2_r50vd_m_dsp_3x_coco.pth
#   python tools/train.py configs/rtdetrv2_r50vd_m_dsp_3x_coco.py
_base_ = [
    './_base_/models/rtdetr_r50vd_m.py', './_base_/models/rtdetrv2_dsp.py',
    './_base_/datasets/coco_detection.py',
    './_base_/schedules/rtdetrv2_3x.py',
    './_base_/schedules/rtdetrv2_param_groups.py',
    './_base_/default_runtime.py'
]

# Merged into the inherited dicts, not replacements (mmengine merges a dict
# into the base's): the RT-DETR model changes only in the keys of
# `rtdetrv2_model`, the schedule's AdamW gets the official groups.
model = _base_.rtdetrv2_model
optim_wrapper = _base_.rtdetrv2_r50_optim_wrapper

# Training fine-tunes the bilinear model (the official config's
# `tuning`); the sampling offsets stay frozen.
load_from = 'https://github.com/lyuwenyu/storage/releases/download/v0.1/rtdetrv2_r50vd_m_7x_coco_ema.pth'  # noqa: E501
