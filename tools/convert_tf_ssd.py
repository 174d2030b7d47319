"""Convert TF's frozen ssd_mobilenet_v2_coco graph into an MMDetection checkpoint
for configs/ssd/ssd_mobilenetv2_tf-coco.py.

The weights are read through OpenCV's DNN importer (no TensorFlow): every conv
and BatchNorm layer of the graph maps to one module of the MMDetection model
(:func:`tf_to_mmdet_key`). The class predictors keep the 80 channels of COCO's
category ids (TF's 90-id label map, channel 0 = background, is dropped). The box
predictors keep the order OpenCV's importer gives them: it has already turned
TF's (ty, tx, th, tw) into (tx, ty, tw, th) (the graph's ``loc_pred_transposed``
flag), which is MMDetection's (dx, dy, dw, dh); the parity test against OpenCV's
own run of the graph checks this.
The output holds only tensors and plain types (``state_dict`` and ``meta``),
so the safe checkpoint loader accepts it.

Example::

    python tools/convert_tf_ssd.py frozen_inference_graph.pb \
        ssd_mobilenet_v2_coco_2018_03_29.pbtxt \
        data/real_model/ssd_mobilenetv2_tf-coco.pth
"""
import argparse
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

# MobileNetV2 blocks per MMDetection layer (``MobileNetV2.arch_settings``):
# TF's expanded_conv, expanded_conv_1 .. _16 in order.
BLOCKS_PER_LAYER = (1, 2, 3, 4, 3, 3, 1)
# COCO category ids (TF's label map) of MMDetection's 80 classes, in order.
COCO_MISSING_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
COCO_IDS = tuple(i for i in range(1, 91) if i not in COCO_MISSING_IDS)
NUM_TF_CLASSES = 91  # background + 90 ids
FEATURE_PREFIX = 'FeatureExtractor/MobilenetV2/'


def _block_key(block: int) -> str:
    """MMDetection key of TF's expanded_conv_<block> (0 = expanded_conv)."""
    start = 0
    for layer, count in enumerate(BLOCKS_PER_LAYER):
        if block < start + count:
            return f'backbone.layer{layer + 1}.{block - start}'
        start += count
    raise ValueError(f'MobileNetV2 has no block {block}')


def tf_to_mmdet_key(module: str) -> Optional[str]:
    """MMDetection module of a TF conv / BatchNorm scope, or None.

    Args:
        module (str): TF scope without the op, e.g.
            ``FeatureExtractor/MobilenetV2/expanded_conv_3/expand``.

    Returns:
        str | None: e.g. ``backbone.layer3.0.expand_conv``.
    """
    if module.startswith('BoxPredictor_'):
        m = re.fullmatch(r'BoxPredictor_(\d+)/(ClassPredictor|'
                         r'BoxEncodingPredictor)', module)
        if m is None:
            return None
        branch = 'cls_convs' if m.group(2) == 'ClassPredictor' else \
            'reg_convs'
        return f'bbox_head.{branch}.{m.group(1)}.0'
    if not module.startswith(FEATURE_PREFIX):
        return None
    name = module[len(FEATURE_PREFIX):]
    if name == 'Conv':
        return 'backbone.conv1'
    if name == 'Conv_1':
        return 'backbone.conv2'
    m = re.fullmatch(r'expanded_conv(?:_(\d+))?/(expand|depthwise|project)',
                     name)
    if m is not None:
        part = dict(expand='expand_conv', depthwise='depthwise_conv',
                    project='linear_conv')[m.group(2)]
        return f'{_block_key(int(m.group(1) or 0))}.{part}'
    m = re.fullmatch(r'layer_19_(1|2)_Conv2d_(\d+)_\w+?(_depthwise)?', name)
    if m is not None:
        extra = int(m.group(2)) - 2  # TF numbers the extra layers from 2
        if m.group(1) == '1':
            return f'neck.extra_layers.{extra}.0'
        part = 'depthwise_conv' if m.group(3) else 'pointwise_conv'
        return f'neck.extra_layers.{extra}.1.{part}'
    return None


def split_layer_name(name: str) -> Optional[Tuple[str, str]]:
    """(TF scope, 'conv' | 'bn') of an OpenCV layer name, or None."""
    for suffix, kind in (('/Conv2D', 'conv'), ('/depthwise', 'conv'),
                         ('/BatchNorm/batchnorm/add_1', 'bn')):
        if name.endswith(suffix):
            return name[:-len(suffix)], kind
    return None


def class_channels(num_anchors: int) -> List[int]:
    """TF class-predictor channels kept, anchor-major: anchor a, COCO id c at
    ``a * 91 + c``, in MMDetection's class order."""
    return [a * NUM_TF_CLASSES + c for a in range(num_anchors)
            for c in COCO_IDS]


def read_tf_weights(pb: str, pbtxt: str) -> Dict[str, object]:
    """All weights of the graph as an MMDetection state dict (numpy arrays).

    Raises:
        ValueError: If a weighted layer of the graph has no MMDetection
            module.
    """
    import cv2
    net = cv2.dnn.readNetFromTensorflow(pb, pbtxt)
    weights: Dict[str, object] = {}
    for name in net.getLayerNames():
        layer = net.getLayer(net.getLayerId(name))
        blobs = list(layer.blobs)
        if not blobs:
            continue
        parsed = split_layer_name(name)
        key = tf_to_mmdet_key(parsed[0]) if parsed else None
        if key is None:
            raise ValueError(f'no MMDetection module for TF layer {name}')
        kind = parsed[1]
        if key.startswith('bbox_head.'):
            weight, bias = blobs
            bias = bias.reshape(-1)
            if '.cls_convs.' in key:
                keep = class_channels(weight.shape[0] // NUM_TF_CLASSES)
                weight, bias = weight[keep], bias[keep]
            weights[f'{key}.weight'] = weight
            weights[f'{key}.bias'] = bias
        elif kind == 'conv':
            if len(blobs) != 1:
                raise ValueError(f'{name}: expected a bias-free conv')
            weights[f'{key}.conv.weight'] = blobs[0]
        else:  # OpenCV's BatchNorm blobs: mean, variance, scale, shift
            mean, var, gamma, beta = (b.reshape(-1) for b in blobs)
            weights.update({f'{key}.bn.running_mean': mean,
                            f'{key}.bn.running_var': var,
                            f'{key}.bn.weight': gamma,
                            f'{key}.bn.bias': beta})
    return weights


def convert(pb: str, pbtxt: str, config: str) -> dict:
    """The checkpoint: weights checked against the config's model.

    Raises:
        ValueError: If the weights and the model's do not match one to one.
    """
    import torch
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    import mmdet_odam  # noqa: F401  (registers the TF SSD modules)

    model = MODELS.build(Config.fromfile(config).model)
    expected = {k: v for k, v in model.state_dict().items()
                if not k.endswith('num_batches_tracked')}
    weights = read_tf_weights(pb, pbtxt)
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(f'weights do not fit {config}: missing {missing[:5]}'
                         f', unexpected {unexpected[:5]}')
    state_dict = {}
    for key, ref in expected.items():
        value = torch.from_numpy(weights[key].copy()).float()
        if value.shape != ref.shape:
            raise ValueError(f'{key}: TF shape {tuple(value.shape)}, model '
                             f'{tuple(ref.shape)}')
        state_dict[key] = value
    for key, value in model.state_dict().items():
        if key.endswith('num_batches_tracked'):
            state_dict[key] = torch.zeros_like(value)
    from mmdet.datasets import CocoDataset
    meta = dict(dataset_meta=dict(classes=list(CocoDataset.METAINFO['classes'])),
                source='TF Object Detection API ssd_mobilenet_v2_coco_'
                '2018_03_29 (Apache-2.0), converted by tools/convert_tf_ssd.py',
                coco_category_ids=list(COCO_IDS))
    return dict(state_dict=state_dict, meta=meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('pb', help='frozen_inference_graph.pb')
    parser.add_argument('pbtxt', help="OpenCV's text graph of the model")
    parser.add_argument('out', help='output checkpoint (.pth)')
    parser.add_argument(
        '--config', default=osp.join(osp.dirname(osp.dirname(osp.abspath(
            __file__))), 'configs/ssd/ssd_mobilenetv2_tf-coco.py'),
        help='MMDetection config of the converted model')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing output file')
    args = parser.parse_args()
    for path in (args.pb, args.pbtxt, args.config):
        if not osp.isfile(path):
            sys.exit(f'error: file not found: {path}')
    if osp.lexists(args.out) and not args.force:
        sys.exit(f'error: {args.out} exists; pass --force to replace it')
    try:
        checkpoint = convert(args.pb, args.pbtxt, args.config)
    except ValueError as e:
        sys.exit(f'error: {e}')
    import torch

    from mmdet_odam.apis.output_files import atomic_open
    out_dir = osp.dirname(osp.abspath(args.out))
    if not osp.isdir(out_dir):
        sys.exit(f'error: output folder does not exist: {out_dir}')
    with atomic_open(args.out) as f:
        torch.save(checkpoint, f)
    print(f'{args.out}: {len(checkpoint["state_dict"])} tensors, '
          f'{osp.getsize(args.out) / 2**20:.1f} MB')


if __name__ == '__main__':
    main()
