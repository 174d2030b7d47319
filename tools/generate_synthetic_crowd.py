"""Generate the deterministic synthetic crowded-scene dataset.

Example::

    python tools/generate_synthetic_crowd.py --out-dir data/synthetic_crowd \
        --num-train 800 --num-val 200 --img-size 256 --num-classes 1 --seed 0

See ``mmdet_odam/datasets/synthetic_crowd.py`` for the output layout.
"""
import argparse
import os.path as osp
import sys
import time
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmdet_odam.datasets.synthetic_crowd import (  # noqa: E402
    SYNTHETIC_CROWD_CLASSES, generate_synthetic_crowd)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse command-line arguments.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` if None.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    p = argparse.ArgumentParser(
        description='Generate the synthetic crowd dataset (COCO + CrowdHuman '
        'annotations).')
    p.add_argument('--out-dir', required=True, help='output directory')
    p.add_argument('--num-train', type=int, default=800)
    p.add_argument('--num-val', type=int, default=200)
    p.add_argument('--img-size', type=int, default=256,
                   help='square image side in pixels (>= 64)')
    p.add_argument('--num-classes', type=int, default=1,
                   help=f'1..{len(SYNTHETIC_CROWD_CLASSES)} classes from '
                   f'{SYNTHETIC_CROWD_CLASSES}')
    p.add_argument('--min-objects', type=int, default=4,
                   help='min objects sampled per image')
    p.add_argument('--max-objects', type=int, default=10,
                   help='max objects sampled per image')
    p.add_argument('--crowd-ratio', type=float, default=0.2,
                   help='fraction of objects placed as crowd pairs')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--overwrite', action='store_true',
                   help='replace images/ and annotation files of an existing '
                   'non-empty output directory (other files are kept)')
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    """Run the generator and print a summary; errors exit with one line."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    try:
        summary = generate_synthetic_crowd(
            args.out_dir, num_train=args.num_train, num_val=args.num_val,
            img_size=args.img_size, num_classes=args.num_classes,
            objects_per_image=(args.min_objects, args.max_objects),
            crowd_ratio=args.crowd_ratio, seed=args.seed,
            overwrite=args.overwrite)
    except (FileExistsError, ValueError, OSError) as e:
        sys.exit(f'error: {e}')
    dt = time.perf_counter() - t0
    print(f"synthetic crowd dataset in {summary['out_dir']} "
          f"({dt:.1f} s), classes: {', '.join(summary['classes'])}")
    for split in ('train', 'val'):
        s = summary[split]
        print(f"  {split:5s}: {s['images']:6d} images {s['boxes']:7d} boxes  "
              f"crowd fraction {s['crowd_fraction']:.3f} "
              f"({s['crowd_boxes']} boxes)  odgt: {s['odgt_boxes']} person + "
              f"{s['ignore_boxes']} ignore")


if __name__ == '__main__':
    main()
