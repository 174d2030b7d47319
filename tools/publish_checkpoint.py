"""Strip a training checkpoint to the weights and dataset meta (what inference
and explanation need), e.g. to ship the embedded default.

Example::

    python tools/publish_checkpoint.py \
        work_dirs/fcos_tiny_synthetic-crowd/epoch_20.pth \
        checkpoints/fcos_tiny_synthetic-crowd.pth
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint written by training')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing output file')
    args = parser.parse_args()
    if not osp.isfile(args.src):
        sys.exit(f'error: checkpoint not found: {args.src}')
    if osp.exists(args.dst) and not args.force:
        sys.exit(f'error: {args.dst} exists; pass --force to replace it')
    import torch

    from mmdet_odam.utils import UnsafeCheckpointError, load_checkpoint_file
    try:
        checkpoint = load_checkpoint_file(args.src, map_location='cpu')
    except UnsafeCheckpointError as e:
        sys.exit(f'error: {e}')
    if 'state_dict' not in checkpoint:
        sys.exit(f'error: {args.src} has no state_dict')
    meta = checkpoint.get('meta', {})
    slim = dict(state_dict=checkpoint['state_dict'],
                meta={k: meta[k] for k in ('dataset_meta', 'epoch', 'iter',
                                           'mmengine_version', 'seed')
                      if k in meta})
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(slim, args.dst)
    print(f'{args.dst}: {osp.getsize(args.dst) / 2**20:.1f} MB')


if __name__ == '__main__':
    main()
