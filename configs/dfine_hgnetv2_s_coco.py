# D-FINE-S (Peng et al., ICLR 2025; official
# configs/dfine/dfine_hgnetv2_s_coco.yml): HGNetv2-B0, D-FINE's encoder,
# the 3-layer FDR decoder (_base_/models/dfine_hgnetv2_s.py,
# _base_/models/dfine.py), on RT-DETRv2's 120-epoch COCO schedule.
# Official release (48.5 AP on COCO val2017), converted on load:
#   python tools/test.py configs/dfine_hgnetv2_s_coco.py \
#       https://github.com/Peterande/storage/releases/download/dfinev1.0/dfine_s_coco.pth
#   python tools/train.py configs/dfine_hgnetv2_s_coco.py
_base_ = [
    './_base_/models/dfine_hgnetv2_s.py', './_base_/models/dfine.py',
    './_base_/datasets/coco_detection.py',
    './_base_/schedules/rtdetrv2_120e.py', './_base_/default_runtime.py'
]

model = dict(_base_.dfine_model,
             data_preprocessor=dict(batch_augments=None))
