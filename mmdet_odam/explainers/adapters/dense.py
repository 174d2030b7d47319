"""Adapter for single-stage dense heads (FCOS, RetinaNet, ATSS, ...).

Detections come from the head's own ``predict_by_feat``, run on a private
copy of the head (sharing its weights) whose candidate filter records every
candidate's (level, flattened index) before NMS
(:func:`track_dense_candidates`), so that each final detection is explained
through exactly the candidate that survived, and nothing another thread uses
is changed.

Scalars per family: ``score`` is the value the detector ranks by: sigmoid class
probability times the sigmoid of the score factor when the head has one (FCOS
centerness, as in MMDetection's post-processing), softmax probability for softmax
heads; ``logit`` is the raw class logit. Box extents come from decoding the
candidate's regression with the head's own ``bbox_coder`` (not clamped to the
image so that border boxes keep a gradient).
"""
import inspect
from contextlib import contextmanager
from types import SimpleNamespace
from typing import (Callable, ContextManager, List, Optional, Sequence,
                    Tuple)

import torch
from mmengine.structures import InstanceData
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.models.detectors import SingleStageDetector
from mmdet.models.utils import filter_scores_and_topk
from torch import Tensor, nn

from ...utils.isolation import bound_with_globals, shared_weights_copy
from .registry import overridden, register_adapter, registered_adapter
from .strides import prior_strides
from .base import (ATTRIBUTES, DetectorAdapter, ForwardState, LevelGradients,
                   outward_extents)
from .receptive_field import (can_use_patches, class_tower_gradients,
                              frozen_norms, is_square_odd_conv, linear_tower,
                              patch_windows, receptive_radius,
                              record_norm_stats)


@contextmanager
def track_dense_candidates(head):
    """Tag the head's pre-NMS candidates with ``cand_level``/``cand_index``.

    ``head`` must be a private copy (:func:`~mmdet_odam.utils.isolation.
    shared_weights_copy`): inside the context its ``_predict_by_feat_single``
    is a copy of its class's method whose ``filter_scores_and_topk`` records
    each level's ``keep_idxs``, and its ``_bbox_post_process`` attaches them.
    MMDetection's module and function are not touched, so other threads
    (and other models) run unchanged.

    Raises:
        TypeError: If the head's ``_predict_by_feat_single`` does not use
            ``filter_scores_and_topk`` (it is overridden: TOOD...).
    """
    kept: List[Tensor] = []
    cls = type(head)

    def recording_filter(*args, **kwargs):
        out = filter_scores_and_topk(*args, **kwargs)
        kept.append(out[2])
        return out

    def tagging_post_process(results, *args, **kwargs):
        levels = [torch.full_like(idx, lvl) for lvl, idx in enumerate(kept)]
        if sum(len(k) for k in kept) != len(results):
            raise TypeError(
                f'{cls.__name__} overrides _predict_by_feat_single; '
                'candidate tracking is not supported for it')
        results.cand_level = torch.cat(levels)
        results.cand_index = torch.cat(kept)
        kept.clear()
        return cls._bbox_post_process(head, results, *args, **kwargs)

    head._predict_by_feat_single = bound_with_globals(
        head, '_predict_by_feat_single',
        filter_scores_and_topk=recording_filter)
    head._bbox_post_process = tagging_post_process
    try:
        yield
    finally:
        del head._predict_by_feat_single, head._bbox_post_process


def dense_candidates(head, feats: Sequence[Tensor],
                     batch_img_metas: Sequence[dict], cfg=None) -> tuple:
    """A dense head's pre-NMS candidates, tagged, and its GroupNorm stats.

    Runs the head on ``feats`` and its own post-processing up to NMS (score
    threshold, ``nms_pre``, score factors; ``rescale=False``,
    ``with_nms=False``) without a graph.

    Args:
        head: A ``BaseDenseHead``, a private copy (``shared_weights_copy``):
            the recording alters how it runs while this runs.
        feats (Sequence[Tensor]): Neck outputs, each (B, C, H_l, W_l).
        batch_img_metas (Sequence[dict]): Image metainfo.
        cfg (ConfigDict, optional): Test config (default: the head's).

    Returns:
        tuple: Per image ``InstanceData`` (``bboxes`` in input pixels,
        ``scores``, ``labels``, ``cand_level``, ``cand_index``) and the
        GroupNorm statistics of the forward (``record_norm_stats``), as
        :class:`~mmdet_odam.models.CandidateMapper` needs them.
    """
    adapter = head_adapter(head)
    with torch.no_grad(), record_norm_stats(head) as norm_stats:
        outs = head(feats)
        with adapter.track_candidates([o.shape[-2:] for o in outs[0]]):
            candidates = head.predict_by_feat(
                *outs, batch_img_metas=list(batch_img_metas), cfg=cfg,
                rescale=False, with_nms=False)
    return candidates, norm_stats


def head_adapter(head, score_target: str = 'logit') -> 'DenseHeadAdapter':
    """The adapter of a bare dense head's family (along its class's MRO, as
    :func:`~.registry.adapter_class`), on ``head`` itself (``from_head``).

    Raises:
        TypeError: One line, when the head's family has no dense adapter or
            overrides a method it relies on.
    """
    for registered in type(head).__mro__:
        adapter = registered_adapter(registered)
        if adapter is None:
            continue
        changed = overridden(head, registered, adapter.relies_on) if \
            issubclass(adapter, DenseHeadAdapter) else ['(not a dense head)']
        if changed:
            raise TypeError(f'{type(head).__name__} overrides '
                            f'{registered.__name__}.{", ".join(changed)}; '
                            'its candidates cannot be tracked')
        return adapter.from_head(head, score_target)
    raise TypeError(f'{type(head).__name__} has no dense-head ODAM adapter')


# Attributes that share head outputs: the score reads the class (and score
# factor) branch, the extents the regression branch, so differentiating the
# groups separately lets autograd skip the other branch.
ATTRIBUTE_GROUPS = ((0, ), (1, 2, 3, 4))


def attribute_gradients(outputs: List[Tensor], leaves: List[Tensor],
                        attr_ids: List[int],
                        create_graph: bool = False) -> List[Tensor]:
    """Gradient of every requested attribute of every row w.r.t. its leaf.

    Args:
        outputs (list[Tensor]): Per leaf, scalars (M_i, len(ATTRIBUTES)); row m
            depends only on row m of its leaf.
        leaves (list[Tensor]): Per leaf, inputs (M_i, ...).
        attr_ids (list[int]): Requested attributes, in output order.
        create_graph (bool): Keep the graph of the gradients themselves
            (second-order training losses).

    Returns:
        list[Tensor]: Per leaf, (len(attr_ids) * M_i, ...), attribute-major.
    """
    if len(attr_ids) == 1:  # rows are independent: one plain backward
        grads = torch.autograd.grad(
            [out[:, attr_ids[0]].sum() for out in outputs], leaves,
            create_graph=create_graph, allow_unused=True)
        return [g if g is not None else torch.zeros_like(leaf)
                for g, leaf in zip(grads, leaves)]
    per_attr = {}
    groups = [[a for a in g if a in attr_ids] for g in ATTRIBUTE_GROUPS]
    groups = [g for g in groups if g]
    for index, group in enumerate(groups):
        cotangents = []
        for out in outputs:
            onehot = out.new_zeros((len(group), ) + tuple(out.shape))
            onehot[torch.arange(len(group)), :, group] = 1
            cotangents.append(onehot)
        # one batched (vmap) backward gives every attribute of the group
        grads = torch.autograd.grad(
            outputs, leaves, cotangents, create_graph=create_graph,
            retain_graph=create_graph or index < len(groups) - 1,
            is_grads_batched=True, allow_unused=True)
        for k, attr in enumerate(group):
            per_attr[attr] = [g[k] if g is not None else torch.zeros_like(leaf)
                              for g, leaf in zip(grads, leaves)]
    return [torch.cat([per_attr[a][i] for a in attr_ids])
            for i in range(len(leaves))]


# Names MMDetection's dense heads give their classification output conv.
CLASS_OUTPUT_NAMES = ('conv_cls', 'retina_cls', 'atss_cls', 'gfl_cls')


def class_tower(head) -> Optional[Tuple[nn.ModuleList, nn.Conv2d]]:
    """The head's classification tower (``cls_convs``) and the class output
    conv reading it, or None when the head is not laid out that way."""
    convs = getattr(head, 'cls_convs', None)
    output = next((getattr(head, name) for name in CLASS_OUTPUT_NAMES
                   if isinstance(getattr(head, name, None), nn.Module)), None)
    if convs is None or output is None:
        return None
    return convs, output


def class_branch(head) -> Optional[Callable[[Tensor], Tensor]]:
    """The head's classification tower alone (``cls_convs`` then its class
    conv), or None when the head is not laid out that way."""
    tower = class_tower(head)
    if tower is None:
        return None
    convs, output = tower

    def run(x: Tensor) -> Tensor:
        for layer in convs:
            x = layer(x)
        return output(x)

    return run


def linear_class_tower(head) -> Optional[Tuple[list, nn.Conv2d]]:
    """The class tower when :func:`class_tower_gradients` can run it by hand
    (ConvModule conv-GN-ReLU layers and a plain output conv), else None."""
    tower = class_tower(head)
    if tower is None or not is_square_odd_conv(tower[1]):
        return None
    layers = linear_tower(tower[0])
    return (layers, tower[1]) if layers else None


def runs_forward_single(head) -> bool:
    """Whether the head's ``forward`` runs its ``forward_single`` per level,
    i.e. ``forward_single`` is defined at or below the class that defines
    ``forward`` (SSDHead's own ``forward`` runs per-level module lists and
    leaves AnchorHead's ``forward_single`` unused)."""
    mro = type(head).__mro__

    def owner(name: str) -> int:
        return next(i for i, cls in enumerate(mro) if name in vars(cls))

    return owner('forward_single') <= owner('forward')


def forward_level(head, x: Tensor, level: int) -> tuple:
    """Run a dense head on one level's input, whatever its signature."""
    params = inspect.signature(head.forward_single).parameters
    args = [x]
    if 'scale' in params:
        args.append(head.scales[level])
    if 'stride' in params:
        args.append(head.strides[level])
    if 'level' in params:  # heads with per-level modules
        args.append(level)
    return head.forward_single(*args)


@register_adapter(BaseDenseHead)
class DenseHeadAdapter(DetectorAdapter):
    """FCOS / RetinaNet and other ``BaseDenseHead`` detectors."""

    family = ('single-stage detectors whose dense head keeps BaseDenseHead\'s '
              'post-processing (FCOS, RetinaNet, ATSS, ...)')
    # candidates are tagged inside these (TOOD overrides them; GFL, RTMDet
    # and YOLOX have their own adapters: dense_families.py)
    relies_on = ('predict_by_feat', '_predict_by_feat_single')
    detector_type = SingleStageDetector

    def __init__(self, model, feature: str = 'neck',
                 score_target: str = 'score') -> None:
        super().__init__(model, feature, score_target)
        # the explanation alters how the head runs (recording, patch convs):
        # on a private copy sharing its weights, never on the model's head
        self.head = shared_weights_copy(model.bbox_head)
        self.num_outputs = None

    @classmethod
    def from_head(cls, head, score_target: str = 'logit'
                  ) -> 'DenseHeadAdapter':
        """Adapter of a bare head on neck features (used inside the head's
        own training / post-processing, where no detector is at hand).

        The adapter works on ``head`` itself (GroupNorm statistics recorded
        on it stay valid): pass a private copy when another thread may run
        it."""
        adapter = cls.__new__(cls)
        super(DenseHeadAdapter, adapter).__init__(
            SimpleNamespace(bbox_head=head), 'neck', score_target)
        adapter.head = head
        adapter.num_outputs = None
        return adapter

    # -- what family subclasses override (dense_families.py) -----------------
    def track_candidates(self, featmap_sizes: Sequence) -> ContextManager:
        """Context in which ``self.head.predict_by_feat`` tags its results
        with ``cand_level``/``cand_index`` (:func:`track_dense_candidates`)."""
        return track_dense_candidates(self.head)

    def grid_priors(self, featmap_sizes: Sequence, dtype: torch.dtype,
                    device: torch.device) -> List[Tensor]:
        """Per level, the priors the head decodes with, (H_l * W_l * A, D)."""
        return self.head.prior_generator.grid_priors(
            featmap_sizes, dtype=dtype, device=device)

    def box_channels(self) -> int:
        """Regression outputs per prior."""
        return self.head.bbox_coder.encode_size

    def decode(self, priors: Tensor, box_vec: Tensor, level: int) -> Tensor:
        """Boxes (M, 4) in input pixels from the regression outputs (M,
        :meth:`box_channels`) of candidates on ``level``, unclamped."""
        return self.head.bbox_coder.decode(priors, box_vec)

    def forward_level(self, x: Tensor, level: int) -> tuple:
        """The head's outputs on one level's input (patch forward)."""
        return forward_level(self.head, x, level)

    def receptive_radius(self) -> int:
        """Cells of one level one output depends on, each way."""
        return receptive_radius(self.head)

    def has_fast_path(self) -> bool:
        # the default patch forward runs ``forward_single``: only valid when
        # the head's own forward does (families override forward_level)
        default_forward = type(self).forward_level is \
            DenseHeadAdapter.forward_level
        return self.feature == 'neck' and can_use_patches(self.head) and \
            (not default_forward or runs_forward_single(self.head))

    def fast_path_is_exact(self) -> bool:
        # GroupNorm statistics are frozen at their full-map values in the
        # patch forward: the gradient through them is dropped
        return self.has_fast_path() and not any(
            isinstance(m, nn.GroupNorm) for m in self.head.modules())

    def neck_strides(self) -> List[int]:
        return prior_strides(self.head.prior_generator)

    def forward(self, inputs: Tensor, data_samples,
                keep_graph: bool = True) -> ForwardState:
        head = self.head
        batch_img_metas = [ds.metainfo for ds in data_samples]
        leaves, feats = self.backbone_or_neck_leaves(inputs)
        with record_norm_stats(head) as norm_stats, \
                torch.set_grad_enabled(keep_graph):
            outs = head(feats)
        self.num_outputs = len(outs)
        detached = [[o.detach() for o in level_outs] for level_outs in outs]
        featmap_sizes = [o.shape[-2:] for o in outs[0]]
        with torch.no_grad(), self.track_candidates(featmap_sizes):
            results = head.predict_by_feat(
                *detached, batch_img_metas=batch_img_metas, rescale=True)
        for img_idx, res in enumerate(results):
            res.img_index = torch.full_like(res.labels, img_idx)
        priors = self.grid_priors(featmap_sizes, dtype=outs[0][0].dtype,
                                  device=outs[0][0].device)
        return ForwardState(
            results=results, activations=leaves,
            strides=self.feature_strides(leaves),
            extras=dict(outs=outs, priors=priors, norm_stats=norm_stats,
                        head_inputs=feats, featmap_sizes=featmap_sizes,
                        metas=batch_img_metas))

    # -- any candidate -----------------------------------------------------------
    def num_classes(self) -> int:
        return self.head.num_classes

    def candidate_locations(self, state: ForwardState,
                            img_idx: int) -> InstanceData:
        """Every (level, prior) of the image: ``cand_level``, ``cand_index``
        (the prior's flattened index on its level, as the head's candidate
        filter numbers them) and ``img_index``."""
        priors = state.extras['priors']
        device = priors[0].device
        levels = torch.cat([torch.full((len(p), ), lvl, dtype=torch.long,
                                       device=device)
                            for lvl, p in enumerate(priors)])
        index = torch.cat([torch.arange(len(p), device=device)
                           for p in priors])
        return InstanceData(cand_level=levels, cand_index=index,
                            img_index=torch.full_like(index, img_idx))

    def pre_nms_candidates(self, state: ForwardState,
                           img_idx: int) -> InstanceData:
        """The head's own post-processing up to NMS (score threshold,
        ``nms_pre``, score factors; rescaled), tagged as the detections."""
        outs = state.extras['outs']
        detached = [[o[img_idx:img_idx + 1].detach() for o in level_outs]
                    for level_outs in outs]
        with torch.no_grad(), \
                self.track_candidates(state.extras['featmap_sizes']):
            pool, = self.head.predict_by_feat(
                *detached, batch_img_metas=[state.extras['metas'][img_idx]],
                rescale=True, with_nms=False)
        pool.img_index = torch.full_like(pool.labels, img_idx)
        return pool

    # -- scalars ---------------------------------------------------------------
    def scalars_from_outputs(self, cls_vec: Tensor, box_vec: Tensor,
                             factor: Tensor, priors: Tensor, labels: Tensor,
                             level: int = 0) -> Tensor:
        """Explained scalars from one candidate's head outputs.

        Args:
            cls_vec (Tensor): Class outputs of the candidate's anchor, (M, K).
            box_vec (Tensor): Regression outputs, (M, encode_size).
            factor (Tensor | None): Score-factor logits (M, ) (FCOS centerness).
            priors (Tensor): The candidates' priors, (M, 2 or 4).
            labels (Tensor): Detected class, (M, ).
            level (int): Level of all candidates (for :meth:`decode`).

        Returns:
            Tensor: (M, len(ATTRIBUTES)).
        """
        head = self.head
        rows = torch.arange(len(labels), device=labels.device)
        if self.score_target == 'logit':
            score = cls_vec[rows, labels]
        elif getattr(head, 'use_sigmoid_cls', True):
            score = cls_vec[rows, labels].sigmoid()
            if factor is not None:
                score = score * factor.sigmoid()
        else:
            score = cls_vec.softmax(-1)[rows, labels]
        boxes = self.decode(priors, box_vec, level)
        return torch.cat([score[:, None], outward_extents(boxes)], dim=1)

    def _candidate_geometry(self, state: ForwardState, img_idx: int):
        """(level, flat index, anchor, row, col) of each candidate, (N, )."""
        res = state.results[img_idx]
        levels, index = res.cand_level, res.cand_index
        sizes = state.extras['featmap_sizes']
        anchors = self.head.prior_generator.num_base_priors[:len(sizes)]
        widths = [int(size[-1]) for size in sizes]
        num_anchors = levels.new_tensor(anchors)[levels]
        pos = index // num_anchors
        width = levels.new_tensor(widths)[levels]
        return levels, index, index % num_anchors, pos // width, pos % width

    def _gather(self, maps: Tensor, batch: Tensor, anchor: Tensor, row: Tensor,
                col: Tensor, group: int) -> Tensor:
        """maps (B, A*group, H, W) -> (M, group) at each candidate."""
        b, ag, h, w = maps.shape
        grouped = maps.reshape(b, ag // group, group, h, w)
        return grouped[batch, anchor, :, row, col]

    def candidate_scalars(self, state: ForwardState, img_idx: int) -> Tensor:
        res = state.results[img_idx]
        outs, priors = state.extras['outs'], state.extras['priors']
        levels, index, anchor, row, col = self._candidate_geometry(
            state, img_idx)
        scalars = res.labels.new_zeros((len(res), len(ATTRIBUTES)),
                                       dtype=outs[0][0].dtype)
        for level in levels.unique().tolist():
            sel = (levels == level).nonzero()[:, 0]
            batch = torch.full_like(sel, img_idx)
            scalars = scalars.index_put(
                (sel, ), self._level_scalars(
                    [o[level] for o in outs], batch, anchor[sel], row[sel],
                    col[sel], priors[level][index[sel]], res.labels[sel],
                    level))
        return scalars

    def candidate_scalars_on_inputs(self, inputs: Tensor,
                                    state: ForwardState, img_idx: int,
                                    det_ids: Sequence[int]) -> Tensor:
        """See the base class: the head runs on row k's features and the
        candidate's (level, index) of ``state`` is read there by
        :meth:`candidate_scalars` (priors and grid sizes are the state's)."""
        feats = self.model.extract_feat(inputs)
        sizes = [tuple(f.shape[-2:]) for f in feats]
        if sizes != [tuple(s) for s in state.extras['featmap_sizes']]:
            raise ValueError(f'inputs of size {tuple(inputs.shape[-2:])} give '
                             f'feature maps {sizes}, not the state\'s')
        res = state.results[img_idx]
        ids = torch.as_tensor(list(det_ids), dtype=torch.long,
                              device=res.labels.device)
        if len(ids) != len(inputs):
            raise ValueError(f'{len(inputs)} inputs for {len(ids)} '
                             'candidates')
        # image k of the view holds candidate k alone
        view = ForwardState(
            results=[res[ids[k:k + 1]] for k in range(len(ids))],
            activations=[], strides=[],
            extras=dict(state.extras, outs=self.head(feats)))
        return torch.cat([self.candidate_scalars(view, k)
                          for k in range(len(ids))])

    def _level_scalars(self, level_outs: Sequence[Tensor], batch: Tensor,
                       anchor: Tensor, row: Tensor, col: Tensor,
                       priors: Tensor, labels: Tensor, level: int = 0
                       ) -> Tensor:
        head = self.head
        cls_vec = self._gather(level_outs[0], batch, anchor, row, col,
                               head.cls_out_channels)
        box_vec = self._gather(level_outs[1], batch, anchor, row, col,
                               self.box_channels())
        factor = None
        if len(level_outs) > 2 and level_outs[2] is not None:
            factor = self._gather(level_outs[2], batch, anchor, row, col, 1)[:, 0]
        return self.scalars_from_outputs(cls_vec, box_vec, factor, priors,
                                         labels, level)

    # -- fast path: receptive-field patches -------------------------------------
    def fast_gradients(self, state: ForwardState, img_idx: int,
                       det_ids: Sequence[int], attr_ids: Sequence[int],
                       create_graph: bool = False):
        """All (detection, attribute) gradients from one patch forward.

        A dense prediction at (level, i, j) only sees its level's feature map
        within the head's receptive radius R. Each detection's (2R+1)^2 patch
        is cut out and the head runs once on all patches with "valid" convs
        (each layer computes only the cone reaching the centre), conv inputs
        masked outside the map (reproducing zero padding) and GroupNorm
        statistics frozen at their full-map values. Patches are independent
        rows, so a batched backward per attribute group yields every
        per-detection gradient. Exact for heads without GroupNorm; with
        GroupNorm it drops only the gradient through the normalisation
        statistics (measured against the exact path in benchmarks/). A class
        logit alone through a conv-GN-ReLU tower skips the patch forward
        (``class_tower_gradients``: same result, by hand).
        """
        if not self.has_fast_path():
            return None
        head = self.head
        res = state.results[img_idx]
        det_ids = torch.as_tensor(det_ids, dtype=torch.long,
                                  device=res.labels.device)
        levels, index, anchor, row, col = (
            t[det_ids] for t in self._candidate_geometry(state, img_idx))
        # candidates may come from several images of the batch (``img_index``)
        images = res.img_index[det_ids] if 'img_index' in res else \
            torch.full_like(det_ids, img_idx)
        radius = self.receptive_radius()
        num_attrs = len(ATTRIBUTES)
        attr_t = torch.as_tensor(list(attr_ids), device=det_ids.device)
        copies = len(attr_t)
        priors_all = state.extras['priors']
        # a class logit alone needs only the classification tower
        class_only = class_branch(head) if (
            list(attr_ids) == [0] and self.score_target == 'logit') else None
        linear = linear_class_tower(head) if class_only else None
        stats = state.extras['norm_stats']
        leaves, outputs, metas, out = [], [], [], []
        for level in levels.unique().tolist():
            sel = (levels == level).nonzero()[:, 0]
            feat = state.activations[level].detach()
            if linear is not None and len(stats.get(linear[0][0], ())) > level:
                # class logit through a conv-GN-ReLU tower: backward by hand
                # from the recorded ReLU masks, no patch forward
                with torch.set_grad_enabled(create_graph):
                    grads = class_tower_gradients(
                        *linear, stats, level, images[sel], row[sel],
                        col[sel], anchor[sel] * head.cls_out_channels +
                        res.labels[det_ids[sel]], *feat.shape[-2:])
                out.append(LevelGradients(
                    level=level, grads=grads,
                    offsets=torch.stack([row[sel], col[sel]], dim=1) -
                    (grads.shape[-1] - 1) // 2,
                    pair_index=det_ids[sel] * num_attrs))
                continue
            patches, masks = patch_windows(
                feat, images[sel], row[sel], col[sel], radius)
            patches.requires_grad_()
            with frozen_norms(head, stats, level,
                              images[sel], masks):
                level_outs = [class_only(patches)] if class_only else \
                    self.forward_level(patches, level)
            # valid convs shrink each output to its centre cone
            level_outs = [o[..., (o.shape[-2] - 1) // 2, None,
                            (o.shape[-1] - 1) // 2, None]
                          for o in level_outs[:self.num_outputs]]
            centre = torch.zeros_like(sel)
            rows = torch.arange(len(sel), device=sel.device)
            if class_only:  # the logit is the only (first) attribute
                scalars = self._gather(
                    level_outs[0], rows, anchor[sel], centre, centre,
                    head.cls_out_channels)[rows, res.labels[det_ids[sel]]]
                scalars = scalars[:, None]
            else:
                scalars = self._level_scalars(
                    level_outs, rows, anchor[sel], centre, centre,
                    priors_all[level][index[sel]], res.labels[det_ids[sel]],
                    level)
            leaves.append(patches)
            outputs.append(scalars)
            metas.append((level, sel, attr_t.repeat_interleave(len(sel))))
        if not leaves:
            return out
        grads = attribute_gradients(outputs, leaves, list(attr_ids),
                                    create_graph)
        for (level, sel, own_attr), grad in zip(metas, grads):
            reps = sel.repeat(copies)
            offsets = torch.stack([row[reps], col[reps]], dim=1) - radius
            out.append(LevelGradients(
                level=level, grads=grad, offsets=offsets,
                pair_index=det_ids[reps] * num_attrs + own_attr))
        return out
