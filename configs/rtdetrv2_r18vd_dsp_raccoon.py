# RT-DETRv2-R18vd with discrete sampling ("dsp") on the shipped raccoon
# data, CPU-sized: the main job (rtdetr_r18vd_raccoon.py) with RT-DETRv2's
# discrete cross-attention (_base_/models/rtdetrv2_dsp.py), whose exported
# graph has no GridSample; its COCO sibling is rtdetrv2_r18vd_dsp_3x_coco.py.
#   python tools/train.py configs/rtdetrv2_r18vd_dsp_raccoon.py
# Like the official dsp models, it can fine-tune a trained bilinear model:
#   python tools/train.py configs/rtdetrv2_r18vd_dsp_raccoon.py \
#       --cfg-options load_from=<rtdetrv2_r18vd_raccoon checkpoint>
_base_ = ['./rtdetr_r18vd_raccoon.py', './_base_/models/rtdetrv2_dsp.py']

# Merged into the inherited RT-DETR model, not a replacement (mmengine
# merges a dict into the base's): only the keys of `rtdetrv2_model` change.
model = _base_.rtdetrv2_model
