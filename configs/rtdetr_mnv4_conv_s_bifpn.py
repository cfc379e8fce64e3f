# RT-DETR-MobileNetV4-ConvSmall-BiFPN, the blog post's model
# (_base_/models/rtdetr_mnv4_conv_s_bifpn.py), on COCO; from scratch.
#   python tools/train.py configs/rtdetr_mnv4_conv_s_bifpn.py
_base_ = [
    './_base_/models/rtdetr_mnv4_conv_s_bifpn.py',
    './_base_/datasets/coco_detection.py', './_base_/schedules/rtdetr_6x.py',
    './_base_/default_runtime.py'
]
