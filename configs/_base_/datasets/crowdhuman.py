# CrowdHuman (Shao et al., 2018), official release layout:
#   data/CrowdHuman/
#     annotation_train.odgt
#     annotation_val.odgt
#     Images/            (all images of CrowdHuman_train0{1,2,3}.zip and
#                         CrowdHuman_val.zip, named {ID}.jpg)
# Image sizes are cached by MMDetection's CrowdHumanDataset on first load as
# data/CrowdHuman/id_hw_{train,val}.json (or made with mmdet's
# tools/misc/get_crowdhuman_id_hw.py).
# Full-body boxes (`fbox`) are the targets; boxes tagged 'mask' or with
# extra.ignore != 0 are ignore regions.
# Evaluation: CrowdHumanRecallMetric = MMDetection's CrowdHumanMetric
# (CrowdDet protocol: AP50, MR^-2, JI) plus the ODAM paper's crowd / sparse
# recall breakdown at the best-JI score threshold (App. A.4.2, Table 7).
# It pairs predictions with odgt lines in order, so the val sampler must not
# shuffle. Image scale: (1333, 800) as the COCO baselines, since the ODAM
# paper keeps the baselines' hyper-parameters (MMDetection's CrowdDet uses
# (1400, 800)).
dataset_type = 'CrowdHumanDataset'
data_root = 'data/CrowdHuman/'
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    # ground truth is loaded after Resize so that it stays in original pixels
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotation_train.odgt',
        data_prefix=dict(img='Images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotation_val.odgt',
        data_prefix=dict(img='Images/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CrowdHumanRecallMetric',
    ann_file=data_root + 'annotation_val.odgt',
    metric=['AP', 'MR', 'JI'],
    eval_mode=0,  # full-body boxes
    iou_thres=0.5,
    # crowd / sparse recall: 'crowd' GT overlaps another GT with IoU > 0.5
    crowd_iou_thr=0.5,
    recall_iou_thr=0.5,
    backend_args=backend_args)
test_evaluator = val_evaluator
