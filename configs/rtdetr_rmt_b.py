# RT-DETR with an RMT-B backbone (layer scale in stages 3-4, widths
# 160/320/512); otherwise as configs/rtdetr_rmt_t.py.
#   python tools/train.py configs/rtdetr_rmt_b.py
# ImageNet weights (official release, Baidu Netdisk): download
# https://pan.baidu.com/s/1ZDNl_broia_fvvlEoTaFhA?pwd=yzge
# to checkpoints/RMT-B.pth.
_base_ = './rtdetr_rmt_t.py'

model = dict(
    backbone=dict(arch='b',
                  init_cfg=dict(checkpoint='checkpoints/RMT-B.pth')),
    neck=dict(in_channels=[160, 320, 512]))
