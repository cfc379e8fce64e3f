# A user's own data set: COCO's pipelines and loaders (./coco_detection.py)
# over `data_root` in the layout `data_format` names. The top-level config
# (configs/rtdetr_r18vd_custom.py) sets both and selects
# runner_type = 'CustomDataRunner' (rtdetr_zoo.datasets.custom_data), which
# at run time (so also after --cfg-options data_root=...) puts data_root and
# the layout below into the train / val / test datasets and evaluators, and
# sets every dataset's metainfo.classes and model.bbox_head.num_classes
# from the class names in the data. Layouts (docs/custom_data.md):
#   yolo: DATA_ROOT/data.yaml (Ultralytics: path, train, val, names); each
#         split is converted to COCO json in DATA_ROOT/coco_from_yolo/ on
#         first use and whenever its files change.
#   coco: DATA_ROOT/annotations/{train,val}.json, images in DATA_ROOT/images/
#   voc:  DATA_ROOT/annotations/*.xml and DATA_ROOT/images/, converted to
#         DATA_ROOT/coco/{train,val}.json on first use (80/20 split).
_base_ = './coco_detection.py'

data_root = 'data/custom/'
data_format = 'yolo'
custom_formats = dict(
    yolo=dict(
        train=dict(type='YOLODataset', data_yaml='data.yaml', split='train',
                   ann_file='coco_from_yolo/train.json'),
        val=dict(type='YOLODataset', data_yaml='data.yaml', split='val',
                 ann_file='coco_from_yolo/val.json')),
    coco=dict(
        train=dict(type='CheckedCocoDataset',
                   ann_file='annotations/train.json',
                   data_prefix=dict(img='images/')),
        val=dict(type='CheckedCocoDataset', ann_file='annotations/val.json',
                 data_prefix=dict(img='images/'))),
    voc=dict(
        train=dict(type='VOCAsCocoDataset', voc_root='',
                   ann_file='coco/train.json',
                   data_prefix=dict(img='images/')),
        val=dict(type='VOCAsCocoDataset', voc_root='',
                 ann_file='coco/val.json', data_prefix=dict(img='images/'))))

# The `yolo` layout under the default data_root (CustomDataRunner rewrites
# these from data_root and data_format).
train_dataloader = dict(dataset=dict(
    _delete_=True, **custom_formats['yolo']['train'], data_root=data_root,
    filter_cfg=dict(filter_empty_gt=False, min_size=1),
    pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(
    _delete_=True, **custom_formats['yolo']['val'], data_root=data_root,
    test_mode=True, pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'coco_from_yolo/val.json')
test_evaluator = val_evaluator
