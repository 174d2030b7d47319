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
# Same images, sizes and pipelines as the COCO-format base; only the
# annotations, the dataset class and the metric differ.
_base_ = './synthetic_crowd_coco.py'

dataset_type = 'CrowdHumanDataset'
data_root = 'data/synthetic_crowd/'  # must match the base (see NOTE above)

train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        ann_file='annotations/annotation_train.odgt',
        extra_ann_file=data_root + 'annotations/id_hw_train.json',
        # CrowdHumanDataset reads `{data_prefix.img}{ID}.jpg`; the generator's
        # IDs are 'train/000000' and each PNG has a `.jpg` alias (same bytes).
        data_prefix=dict(img='images/')))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        ann_file='annotations/annotation_val.odgt',
        extra_ann_file=data_root + 'annotations/id_hw_val.json',
        data_prefix=dict(img='images/')))  # IDs are 'val/000000'
test_dataloader = val_dataloader

val_evaluator = dict(
    _delete_=True,
    type='CrowdHumanRecallMetric',
    ann_file=data_root + 'annotations/annotation_val.odgt',
    metric=['AP', 'MR', 'JI'],
    eval_mode=0,  # full-body boxes
    iou_thres=0.5,
    # crowd / sparse recall: 'crowd' GT overlaps another GT with IoU > 0.5
    crowd_iou_thr=0.5,
    recall_iou_thr=0.5,
    num_ji_process=1,
    backend_args=None)
test_evaluator = val_evaluator
