# RT-DETR-X: HGNetv2-X backbone (_base_/models/rtdetr_hgnetv2_x.py) on COCO.
#   python tools/train.py configs/rtdetr_hgnetv2_x_coco.py
# Ultralytics' COCO model rtdetr-x.pt (the official RT-DETR-X: 54.8 AP on
# COCO val2017, lyuwenyu/RT-DETR README) loads as it is (its layout is
# converted on load; docs/model_zoo.md, "Ultralytics checkpoints"):
#   python tools/test.py configs/rtdetr_hgnetv2_x_coco.py rtdetr-x.pt
#   python tools/train.py configs/rtdetr_hgnetv2_x_coco.py \
#       --cfg-options load_from=rtdetr-x.pt
_base_ = [
    './_base_/models/rtdetr_hgnetv2_x.py',
    './_base_/datasets/coco_detection.py', './_base_/schedules/rtdetr_6x.py',
    './_base_/default_runtime.py'
]

# Where the ultralytics package itself downloads rtdetr-x.pt from
# (ultralytics 8.4: utils/downloads.py, attempt_download_asset with
# repo='ultralytics/assets', release='v8.4.0').
ultralytics_weights = ('https://github.com/ultralytics/assets/releases/'
                       'download/v8.4.0/rtdetr-x.pt')
