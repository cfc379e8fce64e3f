# The RT-DETR schedule (rtdetr_6x.py) for 36 epochs: the official
# rtdetrv2_r18vd_dsp_3x_coco and rtdetrv2_r50vd_m_dsp_3x_coco.
_base_ = './rtdetr_6x.py'

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
