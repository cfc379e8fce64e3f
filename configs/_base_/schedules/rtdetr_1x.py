# The RT-DETR schedule (rtdetr_6x.py) for 12 epochs: the official
# rtdetrv2_r34vd_dsp_1x_coco and rtdetrv2_r50vd_dsp_1x_coco.
_base_ = './rtdetr_6x.py'

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
