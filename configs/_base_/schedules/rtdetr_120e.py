# The RT-DETR schedule (rtdetr_6x.py) for 120 epochs: the official
# rtdetrv2_r18vd_120e_coco and rtdetrv2_r34vd_120e_coco.
_base_ = './rtdetr_6x.py'

max_epochs = 120
train_cfg = dict(max_epochs=max_epochs)
