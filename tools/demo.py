"""Demo: explain the bundled image with the bundled tiny FCOS checkpoint.

Example::

    python tools/demo.py --out-dir outputs/demo

Loads ``configs/fcos/fcos_tiny_synthetic-crowd.py`` and
``checkpoints/fcos_tiny_synthetic-crowd.pth``, explains every detection of
``demo/crowd.png`` scoring >= 0.3 for all targets (score, x1, y1, x2, y2,
combined) and writes the same files as ``tools/explain.py`` (``crowd/``
overlays and gallery, ``crowd.npz``) plus ``summary.txt``: per detection its
score and the share of its 'combined' map's energy (sum of the map) that lies
inside its own box. Paths default to the repository's files, whatever the
working directory; ``--out-dir`` is relative to the working directory.

Files are written as by ``tools/explain.py``: atomically, listed in manifests
(``crowd/.mmdet-odam-manifest.json``, ``.mmdet-odam-manifest.json`` for
``summary.txt``), and only over the demo's own earlier files; existing files
of someone else's at those paths stop it with an ``error:`` line (exit 1)
before the model is built, unless ``--overwrite`` is given.
"""
import argparse
import math
import os.path as osp
import sys
import warnings
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/ helpers
from cli_common import REPO_ROOT as REPO  # noqa: E402
from cli_common import resolve_device  # noqa: E402

sys.path.insert(0, REPO)

CONFIG = osp.join(REPO, 'configs', 'fcos', 'fcos_tiny_synthetic-crowd.py')
CHECKPOINT = osp.join(REPO, 'checkpoints', 'fcos_tiny_synthetic-crowd.pth')
IMAGE = osp.join(REPO, 'demo', 'crowd.png')
SCORE_THR = 0.3
SUMMARY_NAME = 'summary.txt'

HOW_TO_CHECKPOINT = """\
  make it with (from the repository root):
    python tools/generate_synthetic_crowd.py --out-dir data/synthetic_crowd
    python tools/train.py configs/fcos/fcos_tiny_synthetic-crowd.py
    python tools/publish_checkpoint.py \\
       work_dirs/fcos_tiny_synthetic-crowd/epoch_20.pth \\
       checkpoints/fcos_tiny_synthetic-crowd.pth"""
HOW_TO_IMAGE = """\
  make one with (from the repository root):
    python tools/generate_synthetic_crowd.py --out-dir data/synthetic_crowd
    mkdir -p demo && cp data/synthetic_crowd/images/val/000117.png \\
       demo/crowd.png"""


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description='Explain the bundled demo image with ODAM.')
    p.add_argument('--out-dir', default='outputs/demo',
                   help='output directory (default: outputs/demo)')
    p.add_argument('--device', default=None,
                   help='torch device (default: cuda:0 if available, else '
                   'cpu)')
    p.add_argument('--checkpoint', default=CHECKPOINT,
                   help='checkpoint (default: the bundled one)')
    p.add_argument('--image', default=IMAGE,
                   help='image (default: the bundled demo/crowd.png)')
    p.add_argument('--overwrite', action='store_true',
                   help='replace existing output files that the demo did '
                   'not write')
    return p.parse_args(argv)


def _rel(path: str) -> str:
    """Repository-relative path for messages when inside the repository."""
    rel = osp.relpath(osp.abspath(path), REPO)
    return path if rel.startswith('..') else rel


def format_summary(rows: List[dict], header: List[str]) -> str:
    """Text table of :func:`mmdet_odam.apis.export.explanation_summary`."""
    lines = [f'# {h}' for h in header]
    lines.append(f'{"det":>4}  {"label":<12} {"score":>6}  '
                 f'{"energy_in_box":>13}')
    for r in rows:
        frac = r['energy_in_box']
        frac = 'n/a' if math.isnan(frac) else f'{frac:.3f}'
        lines.append(f'{r["index"]:>4}  {r["label"]:<12} {r["score"]:>6.3f}  '
                     f'{frac:>13}')
    valid = [r['energy_in_box'] for r in rows
             if not math.isnan(r['energy_in_box'])]
    if valid:
        lines.append(f'# mean energy_in_box over {len(valid)} detection(s): '
                     f'{sum(valid) / len(valid):.3f}')
    else:
        lines.append('# no detections' if not rows else
                     '# all maps are zero')
    return '\n'.join(lines) + '\n'


def _refused(error) -> int:
    hint = '; use --overwrite to replace them' if error.overridable else ''
    print(f'error: {error}{hint}', file=sys.stderr)
    return 1


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        print(f'error: checkpoint not found: {_rel(args.checkpoint)}\n'
              f'{HOW_TO_CHECKPOINT}', file=sys.stderr)
        return 1
    if not osp.isfile(args.image):
        print(f'error: demo image not found: {_rel(args.image)}\n'
              f'{HOW_TO_IMAGE}', file=sys.stderr)
        return 1

    try:
        device = resolve_device(args.device)
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1

    import mmdet_odam  # noqa: F401  (registers modules)
    from mmdet_odam.apis import explain, init_explained_detector
    from mmdet_odam.apis.export import (OutputConflictError,
                                        check_explanation_outputs,
                                        explanation_summary, read_image,
                                        save_explanation)
    from mmdet_odam.apis.output_files import OutputGroup

    stem = osp.splitext(osp.basename(args.image))[0]
    protected = [args.image, args.checkpoint, CONFIG]
    summary = OutputGroup(args.out_dir, '', lambda name: name == SUMMARY_NAME,
                          protected, args.overwrite)
    try:  # refuse before the model is built
        check_explanation_outputs(args.out_dir, stem, protected,
                                  args.overwrite)
        summary.check([SUMMARY_NAME])
    except OutputConflictError as e:
        return _refused(e)
    try:
        model = init_explained_detector(CONFIG, args.checkpoint, device)
        image = read_image(args.image)
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    warnings.filterwarnings('ignore', message='torch.meshgrid')
    sample = explain(model, image, explainer=dict(type='ODAM'),
                     score_thr=SCORE_THR)
    class_names = (model.dataset_meta or {}).get('classes')
    try:
        saved = save_explanation(sample, image, args.out_dir, stem,
                                 class_names=class_names, protected=protected,
                                 overwrite=args.overwrite)
    except OutputConflictError as e:  # e.g. someone's det000_score.png
        return _refused(e)
    rows = explanation_summary(sample, 'combined', class_names)
    text = format_summary(rows, [
        f'ODAM demo: {_rel(CONFIG)} + {_rel(args.checkpoint)}',
        f'image: {_rel(args.image)}, score_thr: {SCORE_THR}, '
        f'targets: {" ".join(sample.metainfo["targets"])}',
        "energy_in_box: sum of the detection's 'combined' map inside its own "
        'box / sum over the image',
    ])
    summary_path = summary.write(SUMMARY_NAME,
                                 lambda f: f.write(text.encode('utf-8')))
    summary.finish()
    print(text, end='')
    print(f'wrote {saved["num_detections"]} detection(s): '
          f'{len(saved["overlays"])} overlays in '
          f'{osp.join(args.out_dir, stem)}/, {saved["gallery"]}, '
          f'{saved["npz"]}, {summary_path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
