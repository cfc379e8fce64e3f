# RT-DETRv2-RMT-T: rtdetr_rmt_t.py (model and schedule) with RT-DETRv2's
# decoder cross-attention (_base_/models/rtdetrv2.py).
#   python tools/train.py configs/rtdetrv2_rmt_t.py
_base_ = ['./rtdetr_rmt_t.py', './_base_/models/rtdetrv2.py']

model = _base_.rtdetrv2_model
