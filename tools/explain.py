"""Explain every detection of images with ODAM heat maps and save pictures.

``--method bbam`` explains with the BBAM baseline instead (a mask optimised
per detection, ``--bbam-steps`` Adam steps on a ``--bbam-mask-size`` grid;
see ``mmdet_odam/explainers/bbam.py``); its default target is ``score`` alone,
as BBAM gives one map per detection (every requested target shows it).

Example::

    python tools/explain.py configs/fcos/fcos_tiny_synthetic-crowd.py \
        checkpoints/fcos_tiny_synthetic-crowd.pth demo/crowd.png \
        --out-dir outputs/explain

CONFIG is a file or ``mmdet::path/in/mmdet/configs.py``. IMAGES are files or
directories (their .jpg/.jpeg/.png/.bmp files, sorted, not recursive). For
each image ``stem`` it writes, under ``--out-dir``:

* ``<stem>/det<idx:03d>_<target>.png``: heat map of one detection and target
  over the image (RGB), the detection box drawn;
* ``<stem>/det<idx:03d>_grid.png`` with ``--layout grid`` (or ``both``):
  one figure per detection with all its maps side by side (``--layout grid``
  writes these instead of the per-map overlays);
* ``<stem>/gallery.png``: one tile per detection ('combined' map if explained,
  else the first target), or the image captioned "no detections";
  every picture has a legend band: the map's name and a 0-1 colour bar;
* ``<stem>.npz``: ``bboxes`` (N, 4) float32, ``scores`` (N,), ``labels``
  (N,), ``targets`` (T,) str and the maps, in [0, 1] on the original image
  grid, each cropped to its non-zero box (``heatmap_shape``,
  ``heatmap_boxes`` (N, T, 4), ``heatmap_values`` float16; read them with
  ``mmdet_odam.apis.export.load_heatmaps_npz`` or the recipe in that
  module's docstring); ``--dense-npz`` also stores ``heatmaps`` (N, T, H, W)
  float16;
* ``<stem>/.mmdet-odam-manifest.json``: the files above that it wrote.

Candidates other than the final detections (the rows ``det<idx>`` then
number; the npz adds ``ref_index``, ``ref_iou`` and the candidate identity
``cand_*``; see ``mmdet_odam.explainers.candidates``):

* ``--suppressed``: the candidates NMS removed around each detection
  (``--suppressed-iou``, at most ``--max-suppressed`` per detection);
* ``--classes C [C ...]``: each detection's own candidate scored for these
  classes (names or indices), e.g. "bed" vs "bench";
* ``--box X1 Y1 X2 Y2 CLASS`` (repeatable): the best candidate of CLASS for a
  box in original-image pixels (e.g. a missed object), whatever its score.

Files are never half-written (each goes to a temporary file, then is renamed)
and the tool only replaces or removes its own files: those its manifest lists
with unchanged content. A re-run into the same folder replaces them and
removes its earlier ``det*.png`` that this run does not write (fewer
detections); any other file is kept, even one named like its outputs
(``det999_mine.png``). An existing ``gallery.png`` or ``<stem>.npz`` (or
``det*.png`` it would write) that is not its own stops the run with an
``error:`` line (or skips that image, if found only after explaining it),
unless ``--overwrite`` is given. Input images, the config and the checkpoint
are never written over, not even with ``--overwrite``.

Every option, the config, checkpoint, device and the output paths are checked
before the model is built (the feature name and the detector family, which
need the model, right after, before any image); errors print one ``error:``
line and exit 1 (2 for malformed arguments). A checkpoint that does not fit
the config and a detector family without an ODAM adapter are errors too. An
image that is missing or cannot be read is skipped with a ``warning:`` line.
Exit status: 0 when at least one image was explained and saved and no image's
outputs were refused; 1 otherwise.
"""
import argparse
import math
import os.path as osp
import sys
import warnings
from typing import List, Optional, Sequence, Union

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/ helpers
from cli_common import (REPO_ROOT, OneLineArgumentParser,  # noqa: E402
                        add_cfg_options, add_checkpoint_args, fail,
                        find_config, load_explained_detector,
                        resolve_device)

sys.path.insert(0, REPO_ROOT)

DEFAULT_TARGETS = ('score', 'x1', 'y1', 'x2', 'y2', 'combined')
SMOOTH_NAMES = ('adaptive', 'none', 'global')
OVERWRITE_HINT = ('use --overwrite to replace files not written by this '
                  'tool, or another --out-dir')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = OneLineArgumentParser(
        description='Explain detections with ODAM heat maps.')
    p.add_argument('config', help='detector config file (or mmdet::...)')
    p.add_argument('checkpoint', help='checkpoint file matching the config')
    p.add_argument('images', nargs='+',
                   help='image files and/or directories of images')
    p.add_argument('--out-dir', required=True,
                   help='output directory (created if missing)')
    p.add_argument('--targets', nargs='+', default=None,
                   help='explained quantities, from score x1 y1 x2 y2 '
                   'combined (default: all; score with --method bbam)')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='explain detections scoring at least this')
    p.add_argument('--device', default=None,
                   help='torch device (default: cuda:0 if available, else '
                   'cpu)')
    p.add_argument('--method', default='auto',
                   help="ODAM's gradient computation: 'auto', 'fast' or "
                   "'exact'; or 'bbam' for the BBAM baseline")
    p.add_argument('--bbam-steps', type=int, default=300,
                   help='--method bbam: Adam steps per mask (default 300)')
    p.add_argument('--bbam-mask-size', type=int, default=16,
                   help='--method bbam: mask cells per side (default 16)')
    p.add_argument('--feature', default='neck',
                   help="explained feature map: 'neck', 'backbone' or a "
                   "family-specific one such as 'roi' or DETR's 'encoder'")
    p.add_argument('--score-target', default='score',
                   help="what the 'score' map explains: 'score' (the "
                   "detector's confidence), 'logit', or 'mask' (mean mask "
                   'logit of the class, detectors with a mask head)')
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
    p.add_argument('--chunk-size', type=int, default=64,
                   help='detections whose gradients are computed together '
                   '(BBAM: masked images per forward; bounds memory; '
                   'default 64)')
    p.add_argument('--layout', default='separate',
                   choices=('separate', 'grid', 'both'),
                   help="'separate': one overlay per detection and map; "
                   "'grid': one figure per detection with all its maps; "
                   "'both'")
    p.add_argument('--dense-npz', action='store_true',
                   help='also store the maps as a dense (N, T, H, W) float16 '
                   'array in the npz (grows with the image size)')
    which = p.add_mutually_exclusive_group()
    which.add_argument('--suppressed', action='store_true',
                       help='explain the candidates NMS removed around each '
                       'detection instead of the detections')
    which.add_argument('--classes', nargs='+', default=None,
                       help="explain each detection's candidate for these "
                       'classes (names or indices)')
    which.add_argument('--box', nargs=5, action='append', default=None,
                       metavar=('X1', 'Y1', 'X2', 'Y2', 'CLASS'),
                       help='explain the best candidate of CLASS for this box '
                       '(original-image pixels; repeatable)')
    p.add_argument('--suppressed-iou', type=float, default=0.5,
                   help='IoU above which a candidate counts as suppressed by '
                   'a detection (default 0.5)')
    p.add_argument('--max-suppressed', type=int, default=5,
                   help='suppressed candidates per detection, highest scores '
                   'first (default 5)')
    p.add_argument('--overwrite', action='store_true',
                   help='replace existing output files that this tool did '
                   'not write (never input images)')
    add_checkpoint_args(p)
    add_cfg_options(p)
    return p.parse_args(argv)


def parse_smooth(value: str) -> Union[str, float]:
    """``--smooth``: a name of :data:`SMOOTH_NAMES` or a finite sigma >= 0.

    Raises:
        ValueError: For anything else.
    """
    if value in SMOOTH_NAMES:
        return value
    try:
        sigma = float(value)
    except ValueError:
        sigma = float('nan')
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"--smooth must be {', '.join(SMOOTH_NAMES)} or a "
                         f'sigma >= 0 in feature cells, got {value!r}')
    return sigma


def check_options(args: argparse.Namespace) -> List[str]:
    """The cheap checks of the options (no model), in order.

    Returns:
        list[str]: The targets, repeats dropped.

    Raises:
        ValueError | FileNotFoundError: The first problem, in one line.
    """
    if args.targets is None:
        args.targets = ['score'] if args.method == 'bbam' else \
            list(DEFAULT_TARGETS)
    if args.method == 'bbam' and (args.suppressed or args.classes or
                                  args.box):
        raise ValueError('--method bbam explains the final detections only; '
                         '--suppressed / --classes / --box need ODAM')
    targets = list(dict.fromkeys(args.targets))  # drop repeats, keep order
    unknown = [t for t in targets if t not in DEFAULT_TARGETS]
    if unknown:
        raise ValueError(f'unknown target(s) {", ".join(unknown)}; choose '
                         f'from {" ".join(DEFAULT_TARGETS)}')
    if not math.isfinite(args.score_thr) or args.score_thr < 0:
        raise ValueError(f'--score-thr must be a number >= 0, got '
                         f'{args.score_thr}')
    if not 0. <= args.alpha <= 1.:
        raise ValueError(f'--alpha must be in [0, 1], got {args.alpha}')
    parse_smooth(args.smooth)
    if osp.exists(args.out_dir) and not osp.isdir(args.out_dir):
        raise ValueError(f'--out-dir {args.out_dir} is not a directory')
    from mmdet_odam.visualization import check_colormap
    check_colormap(args.cmap)
    return targets


def class_index(name: str, class_names: Optional[Sequence[str]]) -> int:
    """A class given by name (of the model's classes) or by index."""
    if class_names and name in class_names:
        return list(class_names).index(name)
    try:
        return int(name)
    except ValueError:
        known = f'; classes: {", ".join(class_names)}' if class_names else ''
        raise ValueError(f'unknown class {name!r}{known}') from None


def candidate_selector(args: argparse.Namespace,
                       class_names: Optional[Sequence[str]]):
    """The candidates ``--suppressed``/``--classes``/``--box`` ask for, or
    None for the final detections.

    Raises:
        ValueError: Unknown classes, malformed boxes, bad thresholds.
    """
    from mmdet_odam.explainers import (MatchedCandidates, OtherClasses,
                                       SuppressedCandidates)
    if args.suppressed:
        return SuppressedCandidates(iou_thr=args.suppressed_iou,
                                    max_per_detection=args.max_suppressed)
    if args.classes:
        return OtherClasses(
            [class_index(c, class_names) for c in args.classes])
    if args.box:
        try:
            boxes = [[float(v) for v in box[:4]] for box in args.box]
        except ValueError:
            raise ValueError('--box takes X1 Y1 X2 Y2 as numbers, got '
                             f'{args.box}') from None
        return MatchedCandidates(
            boxes, [class_index(box[4], class_names) for box in args.box])
    return None


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    # cheap checks first, before the heavy imports and long before the model
    try:
        config = find_config(args.config)
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(
                f'checkpoint file not found: {args.checkpoint}')
        targets = check_options(args)
        device = resolve_device(args.device)
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e))

    from tqdm import tqdm

    import mmdet_odam  # noqa: F401  (registers modules)
    from mmdet_odam.apis import build_explainer, explain
    from mmdet_odam.apis.explain import build_test_pipeline
    from mmdet_odam.apis.export import (OutputConflictError,
                                        check_explanation_outputs,
                                        collect_images, read_image,
                                        save_explanation, unique_stems)
    from mmdet_odam.explainers import build_adapter

    explainer_cfg = dict(type='ODAM', feature=args.feature,
                         grad_mode=args.grad_mode,
                         score_target=args.score_target,
                         smooth=parse_smooth(args.smooth), method=args.method,
                         cell_position=args.cell_position,
                         chunk_size=args.chunk_size)
    if args.method == 'bbam':
        explainer_cfg = dict(type='BBAM', num_steps=args.bbam_steps,
                             mask_size=args.bbam_mask_size,
                             chunk_size=args.chunk_size)
    try:  # option values the explainer checks itself, still before the model
        explainer = build_explainer(explainer_cfg)
    except (ValueError, TypeError) as e:
        return fail(str(e))

    images, missing = collect_images(args.images)
    for path in missing:
        print(f'warning: image not found, skipped: {path}', file=sys.stderr)
    if not images:
        return fail('no images found in ' + ' '.join(args.images) +
                     ' (.jpg/.jpeg/.png/.bmp files or folders of them)')
    stems = unique_stems(images)
    protected = images + [config, args.checkpoint]
    try:  # the files every image writes: refuse before any heavy work
        for stem in stems:
            check_explanation_outputs(args.out_dir, stem, protected,
                                      args.overwrite)
    except OutputConflictError as e:
        return fail(f'{e}' + (f'; {OVERWRITE_HINT}' if e.overridable
                               else ''))

    model, error = load_explained_detector(config, args, device,
                                           args.cfg_options)
    if error:
        return fail(error)
    try:  # the detector family, the feature it has, the candidates asked
        adapter = build_adapter(model, explainer.feature,
                                explainer.score_target)
        selector = candidate_selector(args, (model.dataset_meta or {}).get(
            'classes'))
        if selector is not None:
            selector.check(adapter)
    except (ValueError, TypeError) as e:
        return fail(str(e))

    class_names = (model.dataset_meta or {}).get('classes')
    pipeline = None
    done = num_dets = refused = 0
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
                             test_pipeline=pipeline, candidates=selector)
        except ValueError as e:  # explainer options the model cannot serve
            return fail(str(e))
        sample.set_metainfo(dict(img_path=path))
        try:
            saved = save_explanation(sample, image, args.out_dir, stem,
                                     class_names=class_names,
                                     alpha=args.alpha, cmap=args.cmap,
                                     protected=protected,
                                     overwrite=args.overwrite,
                                     dense=args.dense_npz,
                                     layout=args.layout)
        except OutputConflictError as e:
            tqdm.write(f'warning: {path}: outputs not written: {e}' +
                       (f'; {OVERWRITE_HINT}' if e.overridable else ''),
                       file=sys.stderr)
            refused += 1
            continue
        for kept in saved['kept']:
            tqdm.write(f'note: kept {kept} (an earlier output that changed '
                       'since, or an input)', file=sys.stderr)
        if saved['num_detections'] == 0:
            tqdm.write(f'note: {path}: no detections with score >= '
                       f'{args.score_thr}; wrote empty {saved["npz"]}')
        done += 1
        num_dets += saved['num_detections']
    skipped = len(images) + len(missing) - done
    rows = 'detection(s)' if selector is None else 'candidate(s)'
    print(f'explained {num_dets} {rows} in {done} image(s) -> '
          f'{args.out_dir}' + (f' ({skipped} skipped)' if skipped else ''))
    if not done:
        return fail('no image could be explained')
    if refused:
        return fail(f'the outputs of {refused} image(s) were not written '
                     '(existing files kept)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
