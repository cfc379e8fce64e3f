# RT-DETR with an RMT-L backbone (layer scale in stages 3-4, widths
# 224/448/640); otherwise as configs/rtdetr_rmt_t.py.
#   python tools/train.py configs/rtdetr_rmt_l.py
# ImageNet weights (official release, Baidu Netdisk): download
# https://pan.baidu.com/s/1v7QWgAh0TulWOTg4d94KHw?pwd=uewu
# to checkpoints/RMT-L.pth.
_base_ = './rtdetr_rmt_t.py'

model = dict(
    backbone=dict(arch='l',
                  init_cfg=dict(checkpoint='checkpoints/RMT-L.pth')),
    neck=dict(in_channels=[224, 448, 640]))
