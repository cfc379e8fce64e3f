# RT-DETR with an RMT-S backbone (decomposed MaSA in stages 1-3, full in 4);
# otherwise as configs/rtdetr_rmt_t.py.
#   python tools/train.py configs/rtdetr_rmt_s.py
# ImageNet weights (official release, Baidu Netdisk): download
# https://pan.baidu.com/s/1aQeErkmy191-zshlW2bT0g?pwd=3ay4
# to checkpoints/RMT-S.pth.
_base_ = './rtdetr_rmt_t.py'

model = dict(
    backbone=dict(arch='s',
                  init_cfg=dict(checkpoint='checkpoints/RMT-S.pth')))
