"""Explain every detection of images with ODAM heat maps and save pictures.

Example::

    python tools/explain.py configs/fcos/fcos_tiny_synthetic-crowd.py \
        checkpoints/fcos_tiny_synthetic-crowd.pth demo/crowd.png \
        --out-dir outputs/explain

IMAGES are files or directories (their .jpg/.jpeg/.png/.bmp files, sorted,
not recursive). For each image ``stem`` it writes, under ``--out-dir``:

* ``<stem>/det<idx:03d>_<target>.png``: heat map of one detection and target
  over the image (RGB), the detection box drawn;
* ``<stem>/gallery.png``: one tile per detection ('combined' map if explained,
  else the first target), or the image captioned "no detections";
* ``<stem>.npz``: ``bboxes`` (N, 4) float32, ``scores`` (N,), ``labels``
  (N,), ``heatmaps`` (N, T, H, W) float16 in [0, 1] on the original image
  grid, ``targets`` (T,) str.

Errors in the arguments, config, checkpoint (including weights that do not
fit the config) or explainer options print one ``error:`` line and exit 1
(2 for malformed arguments). An image that is missing or cannot be read is
skipped with a ``warning:`` line; the exit status is 0 when at least one image
was explained, 1 when none was.
"""
import argparse
import os.path as osp
import sys
import warnings
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

DEFAULT_TARGETS = ('score', 'x1', 'y1', 'x2', 'y2', 'combined')


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message."""

    def error(self, message: str):
        self.exit(2, f'error: {message} (see {self.prog} --help)\n')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = _Parser(description='Explain detections with ODAM heat maps.')
    p.add_argument('config', help='detector config file')
    p.add_argument('checkpoint', help='checkpoint file matching the config')
    p.add_argument('images', nargs='+',
                   help='image files and/or directories of images')
    p.add_argument('--out-dir', required=True,
                   help='output directory (created if missing)')
    p.add_argument('--targets', nargs='+', default=list(DEFAULT_TARGETS),
                   help='explained quantities, from score x1 y1 x2 y2 '
                   'combined (default: all)')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='explain detections scoring at least this')
    p.add_argument('--device', default=None,
                   help='torch device (default: cuda:0 if available, else '
                   'cpu)')
    p.add_argument('--method', default='auto',
                   help="gradient computation: 'auto', 'fast' or 'exact'")
    p.add_argument('--feature', default='neck',
                   help="explained feature map: 'neck', 'backbone' or a "
                   "family-specific one such as 'roi' or DETR's 'encoder'")
    p.add_argument('--grad-mode', default='pos_relu',
                   help="'pos_relu', 'neg_relu', 'pos' or 'abs'")
    p.add_argument('--smooth', default='adaptive',
                   help="gradient smoothing: 'adaptive', 'none', 'global' or "
                   'a sigma in feature cells')
    p.add_argument('--cell-position', default='grid',
                   help="where feature cells lie in the image: 'grid' (plain "
                   "resize) or 'receptive_field' (receptive-field centres)")
    p.add_argument('--alpha', type=float, default=0.7,
                   help='overlay opacity at the hottest pixels, in [0, 1]')
    p.add_argument('--cmap', default='jet', help='matplotlib colormap')
    p.add_argument('--trust-checkpoint', action='store_true',
                   help='unpickle the checkpoint fully (it may then run '
                   'code: only for files you trust)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value pairs')
    return p.parse_args(argv)


def _smooth(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def _fail(message: str) -> int:
    lines = [line.strip() for line in str(message).splitlines()]
    print('error: ' + ' | '.join(line for line in lines if line),
          file=sys.stderr)
    return 1


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    # cheap checks first, before the heavy imports
    if not osp.isfile(args.config):
        return _fail(f'config file not found: {args.config}')
    if not osp.isfile(args.checkpoint):
        return _fail(f'checkpoint file not found: {args.checkpoint}')
    targets = list(dict.fromkeys(args.targets))  # drop repeats, keep order
    unknown = [t for t in targets if t not in DEFAULT_TARGETS]
    if unknown:
        return _fail(f'unknown target(s) {", ".join(unknown)}; choose from '
                     f'{" ".join(DEFAULT_TARGETS)}')
    if not 0. <= args.alpha <= 1.:
        return _fail(f'--alpha must be in [0, 1], got {args.alpha}')

    import torch
    from tqdm import tqdm

    import mmdet_odam  # noqa: F401  (registers modules)
    from mmdet_odam.apis import (build_explainer, explain,
                                 init_explained_detector)
    from mmdet_odam.apis.explain import build_test_pipeline
    from mmdet_odam.apis.export import (collect_images, read_image,
                                        save_explanation, unique_stems)
    from mmdet_odam.explainers import build_adapter

    images, missing = collect_images(args.images)
    for path in missing:
        print(f'warning: image not found, skipped: {path}', file=sys.stderr)
    if not images:
        return _fail('no images found in ' + ' '.join(args.images) +
                     ' (.jpg/.jpeg/.png/.bmp files or folders of them)')

    device = args.device or ('cuda:0' if torch.cuda.is_available() else
                             'cpu')
    try:
        model = init_explained_detector(args.config, args.checkpoint, device,
                                        args.cfg_options,
                                        trusted=args.trust_checkpoint)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e))
    except Exception as e:  # config syntax, unknown model type, bad device
        return _fail(f'cannot build the detector from {args.config}: '
                     f'{type(e).__name__}: {e}'.splitlines()[0])
    explainer_cfg = dict(type='ODAM', feature=args.feature,
                         grad_mode=args.grad_mode, smooth=_smooth(args.smooth),
                         method=args.method, cell_position=args.cell_position)
    try:
        explainer = build_explainer(explainer_cfg)
        build_adapter(model, explainer.feature, explainer.score_target)
    except (ValueError, TypeError) as e:
        return _fail(str(e))

    class_names = (model.dataset_meta or {}).get('classes')
    stems = unique_stems(images)
    pipeline = None
    done = num_dets = 0
    warnings.filterwarnings('ignore', message='torch.meshgrid')
    for path, stem in zip(tqdm(images, desc='explain', unit='img'), stems):
        try:
            image = read_image(path)
        except (OSError, ValueError) as e:
            tqdm.write(f'warning: {e}; skipped', file=sys.stderr)
            continue
        if pipeline is None:
            pipeline = build_test_pipeline(model, image)
        try:
            sample = explain(model, image, explainer=explainer,
                             targets=targets, score_thr=args.score_thr,
                             test_pipeline=pipeline)
        except ValueError as e:  # explainer options the model cannot serve
            return _fail(str(e))
        sample.set_metainfo(dict(img_path=path))
        saved = save_explanation(sample, image, args.out_dir, stem,
                                 class_names=class_names, alpha=args.alpha,
                                 cmap=args.cmap)
        if saved['num_detections'] == 0:
            tqdm.write(f'note: {path}: no detections with score >= '
                       f'{args.score_thr}; wrote empty {saved["npz"]}')
        done += 1
        num_dets += saved['num_detections']
    skipped = len(images) + len(missing) - done
    print(f'explained {num_dets} detection(s) in {done} image(s) -> '
          f'{args.out_dir}' + (f' ({skipped} skipped)' if skipped else ''))
    if not done:
        return _fail('no image could be explained')
    return 0


if __name__ == '__main__':
    sys.exit(main())
