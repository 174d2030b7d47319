"""Odam-Train evidence: the tiny synthetic FCOS trained with and without it.

Both checkpoints come from the same config, schedule and seed
(``configs/fcos/fcos_tiny_synthetic-crowd.py`` and its Odam-Train child
``configs/fcos/fcos_tiny_odam-train_synthetic-crowd.py``; see README). This
script measures on the synthetic crowded val split:

* AP50 (COCO metric, MMDetection's ``CocoMetric``) of each checkpoint;
* the object discrimination index ODI (Sec. 4.2; box and mask) and the other
  localisation metrics of ODAM maps of each checkpoint
  (``tools/eval_explanations.py --methods odam``);
* training time per iteration with and without Odam-Train, measured in this
  one process on the same batches, steps interleaved (noisy machines).

Goals (issue): ODI lower by >= 10 % relative with AP50 within 1 point;
time per iteration <= 1.5x.

Usage::

    python benchmarks/odam_train_evidence.py \\
        --baseline checkpoints/fcos_tiny_synthetic-crowd.pth \\
        --odam-train checkpoints/fcos_tiny_odam-train_synthetic-crowd.pth
"""
import argparse
import copy
import json
import os
import os.path as osp
import statistics
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))
from cli_common import load_script  # noqa: E402
BASE_CFG = osp.join(ROOT, 'configs/fcos/fcos_tiny_synthetic-crowd.py')
ODAM_CFG = osp.join(ROOT,
                    'configs/fcos/fcos_tiny_odam-train_synthetic-crowd.py')
R50_CFG = osp.join(ROOT,
                   'configs/fcos/fcos_r50_fpn_gn-head_odam-train_1x_coco.py')


def detection_ap50(checkpoint: str, work_dir: str, data_root: str) -> float:
    """COCO AP50 of the tiny FCOS on the val split (Runner.test)."""
    import mmdet_odam  # noqa: F401
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(BASE_CFG)
    cfg.test_dataloader.dataset.data_root = data_root
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    cfg.test_evaluator.ann_file = osp.join(
        data_root, 'annotations/instances_val.json')
    cfg.load_from = checkpoint
    cfg.work_dir = work_dir
    metrics = Runner.from_cfg(cfg).test()
    return 100 * metrics['coco/bbox_mAP_50']


def explanation_metrics(checkpoint: str, work_dir: str, data_root: str,
                        num_images: int) -> dict:
    tool = load_script('tools/eval_explanations.py')
    argv = [BASE_CFG, checkpoint, '--methods', 'odam', '--deletion-steps',
            '0', '--work-dir', work_dir, '--log-interval', '50',
            '--cfg-options', f'test_dataloader.dataset.data_root={data_root}',
            f'test_evaluator.ann_file={data_root}/annotations/'
            'instances_val.json']
    if num_images > 0:
        argv[2:2] = ['--num-images', str(num_images)]
    return tool.main(argv)['odam']['metrics']


def synthetic_crowd_batches(data_root: str, iters: int,
                            batch_size: int) -> list:
    """Training batches of the synthetic crowd data (the config's pipeline)."""
    import mmdet_odam  # noqa: F401
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    register_all_modules()
    ds_cfg = copy.deepcopy(Config.fromfile(ODAM_CFG).train_dataloader.dataset)
    ds_cfg.data_root = data_root
    dataset = DATASETS.build(ds_cfg)
    return [pseudo_collate([dataset[i * batch_size + j]
                            for j in range(batch_size)])
            for i in range(iters)]


def random_coco_batches(iters: int, batch_size: int, size=(800, 1216),
                        num_boxes: int = 15) -> list:
    """Random images with random GT boxes at COCO training size."""
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(iters):
        inputs, samples = [], []
        for _ in range(batch_size):
            inputs.append(torch.randint(0, 256, (3, ) + size, generator=gen,
                                        dtype=torch.uint8))
            xy = torch.rand(num_boxes, 2, generator=gen) * torch.tensor(
                [size[1] * 0.8, size[0] * 0.8])
            wh = 40 + torch.rand(num_boxes, 2, generator=gen) * 200
            sample = DetDataSample(metainfo=dict(
                img_shape=size, ori_shape=size, pad_shape=size,
                scale_factor=(1., 1.)))
            sample.gt_instances = InstanceData(
                bboxes=torch.cat([xy, xy + wh], 1),
                labels=torch.randint(0, 80, (num_boxes, ), generator=gen))
            samples.append(sample)
        batches.append(dict(inputs=inputs, data_samples=samples))
    return batches


def iteration_times(config: str, batches: list) -> tuple:
    """Median seconds per training step without / with Odam-Train.

    Two copies of the model (same initial weights) train on the same batches;
    their steps alternate so that machine noise hits both alike.
    """
    import torch
    import mmdet_odam  # noqa: F401
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper

    from mmdet_odam.models import OdamTrainLoss, install_odam_train
    register_all_modules()
    cfg = Config.fromfile(config)
    hook_cfg = copy.deepcopy(cfg.custom_hooks[0])
    hook_cfg.pop('type')
    hook_cfg.pop('warmup_iters', None)
    cfg.model.backbone.init_cfg = None  # no pretrained weights offline
    models, wrappers = [], []
    for odam in (False, True):
        torch.manual_seed(0)
        model = MODELS.build(copy.deepcopy(cfg.model)).train()
        if odam:
            install_odam_train(model, OdamTrainLoss(**hook_cfg))
        models.append(model)
        wrappers.append(build_optim_wrapper(model, cfg.optim_wrapper))
    times = ([], [])
    for step, batch in enumerate(batches):
        for k in (0, 1) if step % 2 == 0 else (1, 0):
            start = time.perf_counter()
            models[k].train_step(batch, wrappers[k])
            times[k].append(time.perf_counter() - start)
    warm = max(1, len(batches) // 5)  # allocator / thread warm-up
    return (statistics.median(times[0][warm:]),
            statistics.median(times[1][warm:]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--baseline', default=osp.join(
        ROOT, 'checkpoints/fcos_tiny_synthetic-crowd.pth'))
    p.add_argument('--odam-train', required=True)
    p.add_argument('--data-root', default=osp.join(ROOT,
                                                   'data/synthetic_crowd'))
    p.add_argument('--num-images', type=int, default=0,
                   help='val images for the explanation metrics (0: all)')
    p.add_argument('--timing-iters', type=int, default=20)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--r50', action='store_true',
                   help='also time FCOS-R50 steps (COCO config, random '
                   '800x1216 images)')
    p.add_argument('--r50-iters', type=int, default=5)
    p.add_argument('--threads', type=int, default=0,
                   help='torch threads for the timing (0: leave default)')
    p.add_argument('--work-dir', default=osp.join(
        ROOT, 'work_dirs/odam_train_evidence'))
    args = p.parse_args()
    if not osp.isdir(osp.join(args.data_root, 'annotations')):
        sys.exit(f'error: no synthetic data in {args.data_root}; run '
                 'python tools/generate_synthetic_crowd.py --out-dir '
                 f'{args.data_root}')
    for ckpt in (args.baseline, args.odam_train):
        if not osp.isfile(ckpt):
            sys.exit(f'error: checkpoint not found: {ckpt}')
    os.makedirs(args.work_dir, exist_ok=True)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)

    rows = {}
    for name, ckpt in (('without', args.baseline),
                       ('with Odam-Train', args.odam_train)):
        tag = 'odam' if name != 'without' else 'base'
        ap50 = detection_ap50(ckpt, osp.join(args.work_dir, f'test_{tag}'),
                              args.data_root)
        expl = explanation_metrics(ckpt, osp.join(args.work_dir,
                                                  f'expl_{tag}'),
                                   args.data_root, args.num_images)
        rows[name] = dict(ap50=ap50, **expl)
    t_base, t_odam = iteration_times(
        ODAM_CFG, synthetic_crowd_batches(args.data_root, args.timing_iters,
                                          args.batch_size))
    r50 = None
    if args.r50:
        r50 = iteration_times(R50_CFG, random_coco_batches(args.r50_iters, 2))

    keys = [('ap50', 'AP50'), ('odi_box', 'ODI box'),
            ('odi_mask', 'ODI mask'), ('pg_box', 'PG box'),
            ('epg_box', 'enPG box'), ('compactness', 'compact.')]
    lines = ['| FCOS tiny | ' + ' | '.join(t for _, t in keys) +
             ' | s / iter |', '|---' * (len(keys) + 2) + '|']
    for (name, row), sec in zip(rows.items(), (t_base, t_odam)):
        lines.append(f'| {name} | ' + ' | '.join(
            f'{row.get(k, float("nan")):.2f}' for k, _ in keys) +
            f' | {sec:.3f} |')
    table = '\n'.join(lines)
    base, odam = rows['without'], rows['with Odam-Train']
    odi_drop = 100 * (1 - odam['odi_box'] / base['odi_box'])
    ap_delta = odam['ap50'] - base['ap50']
    ratio = t_odam / t_base
    print('\n' + table)
    checks = [
        (f'ODI(box) lower by >= 10% relative (measured {odi_drop:.1f}%)',
         odi_drop >= 10),
        (f'AP50 within 1 point (measured {ap_delta:+.2f})',
         abs(ap_delta) <= 1 or ap_delta > 0),
        (f'time per iteration <= 1.5x (measured {ratio:.2f}x)',
         ratio <= 1.5),
    ]
    if r50 is not None:
        print(f'FCOS-R50, 2 random 800x1216 images per step: '
              f'{r50[0]:.2f} s / iter without, {r50[1]:.2f} s with Odam-Train '
              f'({r50[1] / r50[0]:.2f}x)')
    for text, ok in checks:
        print(f'  [{"PASS" if ok else "FAIL"}] {text}')
    with open(osp.join(args.work_dir, 'odam_train_evidence.json'), 'w') as f:
        json.dump(dict(rows=rows, sec_per_iter=dict(without=t_base,
                                                    with_odam=t_odam),
                       table=table), f, indent=2)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == '__main__':
    sys.exit(main())
