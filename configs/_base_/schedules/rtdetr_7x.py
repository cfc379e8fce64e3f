# The RT-DETR schedule (rtdetr_6x.py) for 84 epochs: the official
# rtdetrv2_r50vd_m_7x_coco.
_base_ = './rtdetr_6x.py'

max_epochs = 84
train_cfg = dict(max_epochs=max_epochs)
