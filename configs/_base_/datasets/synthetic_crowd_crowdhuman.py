# Synthetic crowd dataset in CrowdHuman (odgt) format, evaluated with
# CrowdHumanRecallMetric: MMDetection's CrowdHumanMetric (CrowdDet protocol:
# AP, MR^-2, JI) plus the crowd / sparse recall breakdown (ODAM App. A.4.2).
#   python tools/generate_synthetic_crowd.py --out-dir data/synthetic_crowd
# Layout: {data_root}/annotations/annotation_{train,val}.odgt and
#         {data_root}/annotations/id_hw_{train,val}.json ({ID: [h, w]}).
# NOTE: `extra_ann_file` and the evaluator's `ann_file` are NOT joined with
# `data_root` by MMDetection; they are built from `data_root` when this file is
# read. When overriding `data_root` on the command line, override them too.
# The metric pairs predictions with odgt lines in order: keep
# `val_dataloader.sampler.shuffle=False` and every val image needs >= 1 box.
dataset_type = 'CrowdHumanDataset'
data_root = 'data/synthetic_crowd/'
backend_args = None
img_scale = (256, 256)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/annotation_train.odgt',
        extra_ann_file=data_root + 'annotations/id_hw_train.json',
        # CrowdHumanDataset reads `{data_prefix.img}{ID}.jpg`; the generator's
        # IDs are 'train/000000' and each PNG has a `.jpg` alias (same bytes).
        data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/annotation_val.odgt',
        extra_ann_file=data_root + 'annotations/id_hw_val.json',
        data_prefix=dict(img='images/'),  # IDs are 'val/000000'
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CrowdHumanRecallMetric',
    ann_file=data_root + 'annotations/annotation_val.odgt',
    metric=['AP', 'MR', 'JI'],
    eval_mode=0,  # full-body boxes
    iou_thres=0.5,
    # crowd / sparse recall: 'crowd' GT overlaps another GT with IoU > 0.5
    crowd_iou_thr=0.5,
    recall_iou_thr=0.5,
    num_ji_process=1,
    backend_args=backend_args)
test_evaluator = val_evaluator
