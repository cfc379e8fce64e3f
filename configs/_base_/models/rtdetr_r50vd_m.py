# RT-DETR-R50vd-M: rtdetr_r50vd.py with encoder expansion 0.5, decoding with
# the third of the 6 decoder layers at inference (official
# rtdetr_r50vd_m_6x_coco / rtdetrv2_r50vd_m_7x_coco: eval_idx 2).
_base_ = './rtdetr_r50vd.py'

model = dict(neck=dict(expansion=0.5), decoder=dict(eval_idx=2))
