"""What every detector family tells the explainer.

An adapter runs the detector with the explained feature map as autograd leaves,
returns the model's own final detections (after its post-processing) tagged with
the identity of the candidate each came from, and computes, for those exact
candidates, the explained scalars with the graph kept.

Scalars (one column per ``ATTRIBUTES`` entry) in input-image pixels:

* ``score``: the detector's confidence of the detection's class (see each family).
* ``x1``, ``y1``, ``x2``, ``y2``: box extents signed so that a larger value means a
  larger box (``-x1``, ``-y1``, ``x2``, ``y2`` of the decoded box). For FCOS this
  equals its regressed left/top/right/bottom distances up to a constant, so a
  positive gradient explains what expands the box (App. A.5.6).
"""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from ..heatmap import support_box
from .registry import overridden
from .strides import backbone_strides, neck_strides

ATTRIBUTES = ('score', 'x1', 'y1', 'x2', 'y2')


def outward_extents(boxes: Tensor) -> Tensor:
    """Box extents signed so that growing the box increases them.

    Args:
        boxes (Tensor): Boxes (x1, y1, x2, y2), shape (N, 4).

    Returns:
        Tensor: (-x1, -y1, x2, y2), shape (N, 4).
    """
    return boxes * boxes.new_tensor([-1., -1., 1., 1.])


@dataclass
class LevelGradients:
    """Gradients of explained scalars w.r.t. windows of one feature level.

    Attributes:
        level (int): Index into ``ForwardState.activations``.
        grads (Tensor): Gradient windows, shape (M, C, h, w).
        offsets (Tensor): (y0, x0) of each window on the level grid, (M, 2);
            full-map gradients have offset (0, 0).
        pair_index (Tensor): Which (detection, attribute) pair each window
            explains, as ``det * num_attributes + attribute``, shape (M, ).
        activations (Tensor, optional): Explicit activation windows (M, C, h, w)
            for maps that are not a shared level grid (RoI features).
        roi_boxes (Tensor, optional): Input-pixel boxes (M, 4) into which maps
            on an RoI grid are pasted.
    """
    level: int
    grads: Tensor
    offsets: Tensor
    pair_index: Tensor
    activations: Optional[Tensor] = None
    roi_boxes: Optional[Tensor] = None


@dataclass
class ForwardState:
    """One detector forward with the explained feature map as leaves.

    Attributes:
        results (list[InstanceData]): Final detections per image (rescaled to
            the original image), with candidate identity fields.
        activations (list[Tensor]): Explained feature maps, each (B, C, H, W),
            requiring grad.
        strides (list[int]): Input-pixel stride of each map.
        extras (dict): Family-specific tensors kept with the graph.
    """
    results: List[InstanceData]
    activations: List[Tensor]
    strides: List[int]
    extras: dict = field(default_factory=dict)


class DetectorAdapter:
    """Base adapter. Subclasses implement :meth:`forward` and
    :meth:`candidate_scalars`; :meth:`fast_gradients` is optional.

    Args:
        model: An MMDetection detector in eval mode.
        feature (str): ``'neck'`` (default), ``'backbone'`` or a family-specific
            name such as ``'roi'``.
        score_target (str): ``'score'`` (final confidence), ``'logit'`` or
            a family-specific scalar of ``score_targets`` (e.g. ``'mask'``).
    """

    features: Sequence[str] = ('neck', 'backbone')
    #: What the ``score`` column may explain.
    score_targets: Sequence[str] = ('score', 'logit')
    #: The detectors it explains, in words (named by refusals of others).
    family: str = ''
    #: Methods of the registered head class the adapter hooks into or
    #: replays: a subclass overriding one of them is refused.
    relies_on: Sequence[str] = ()
    #: The detector class the family part must sit in.
    detector_type: type = object

    def __init__(self, model, feature: str = 'neck',
                 score_target: str = 'score') -> None:
        if feature not in self.features:
            raise ValueError(
                f'feature {feature!r} does not exist for '
                f'{type(model).__name__}; choose from {tuple(self.features)}')
        if score_target not in self.score_targets:
            raise ValueError(
                f'score_target must be one of {tuple(self.score_targets)} for '
                f'{type(model).__name__}, got {score_target!r}')
        self.model = model
        self.feature = feature
        self.score_target = score_target

    @classmethod
    def unsupported_reason(cls, model, part, registered: type
                           ) -> Optional[str]:
        """Why this adapter cannot explain ``model`` whose family part
        ``part`` resolved to the registered head class ``registered``, or
        None when it can. Subclasses add family-specific checks."""
        if not isinstance(model, cls.detector_type):
            return (f'{cls.__name__} needs a '
                    f'{cls.detector_type.__name__}')
        changed = overridden(part, registered, cls.relies_on)
        if changed:
            return (f'{type(part).__name__} overrides {registered.__name__}.'
                    f'{", ".join(changed)}')
        return None

    # -- feature leaves -----------------------------------------------------
    def backbone_or_neck_leaves(self, inputs: Tensor):
        """Run backbone (+ neck) so that the explained maps are leaves.

        Returns:
            tuple: (leaves, features fed to the head).
        """
        model = self.model
        if self.feature == 'backbone' or not model.with_neck:
            with torch.no_grad():
                stages = model.backbone(inputs)
            leaves = [s.detach().requires_grad_() for s in stages]
            feats = model.neck(tuple(leaves)) if model.with_neck else leaves
            return leaves, tuple(feats)
        with torch.no_grad():
            feats = model.extract_feat(inputs)
        leaves = [f.detach().requires_grad_() for f in feats]
        return leaves, tuple(leaves)

    def feature_strides(self, leaves: Sequence[Tensor]) -> List[int]:
        """Nominal stride of each leaf map, from the model's definitions
        (:mod:`.strides`), never from tensor sizes.

        Raises:
            ValueError: If the definitions do not tell it, or the number of
                strides does not match the leaves.
        """
        strides = self.backbone_strides() if self.feature == 'backbone' or \
            not self.model.with_neck else self.neck_strides()
        if len(strides) != len(leaves):
            raise ValueError(
                f'{len(strides)} feature strides {strides} for {len(leaves)} '
                f'{self.feature} maps of {type(self.model).__name__}')
        return strides

    def backbone_strides(self) -> List[int]:
        """Strides of the backbone outputs."""
        return backbone_strides(self.model.backbone)

    def neck_strides(self) -> List[int]:
        """Strides of the neck outputs (families with a prior generator
        override this with its strides)."""
        return neck_strides(self.model.neck, self.backbone_strides())

    # -- per-family ----------------------------------------------------------
    def forward(self, inputs: Tensor, data_samples: list,
                keep_graph: bool = True) -> ForwardState:
        """Run the detector; ``data_samples`` carry each image's metainfo.

        ``keep_graph=False`` lets families with a fast path skip recording the
        full-image autograd graph that only the exact path needs.
        """
        raise NotImplementedError

    def has_fast_path(self) -> bool:
        """Whether :meth:`fast_gradients` applies to this model/feature."""
        return False

    def fast_path_is_exact(self) -> bool:
        """Whether :meth:`fast_gradients` equals the exact gradients (not
        only approximates them, e.g. with frozen normalisation statistics)."""
        return self.has_fast_path()

    def candidate_scalars(self, state: ForwardState, img_idx: int) -> Tensor:
        """Explained scalars of the final detections of one image.

        Returns:
            Tensor: (N, len(ATTRIBUTES)) connected to ``state.activations``.
        """
        raise NotImplementedError

    def fast_gradients(self, state: ForwardState, img_idx: int,
                       det_ids: Sequence[int], attr_ids: Sequence[int]
                       ) -> Optional[List[LevelGradients]]:
        """Batched gradients, or None when the family has no fast path."""
        return None

    # -- any candidate (see explainers/candidates.py) ---------------------------
    def num_classes(self) -> int:
        """Number of object classes the detector scores."""
        part = getattr(self.model, 'roi_head', None)
        head = part.bbox_head if part is not None else self.model.bbox_head
        return head.num_classes

    def set_candidates(self, state: ForwardState, img_idx: int,
                       rows: InstanceData) -> None:
        """Make ``rows`` (identity fields and ``labels``) the candidates
        explained for one image in place of its final detections; families
        that precompute per-detection tensors refresh them here."""
        state.results[img_idx] = rows

    def candidate_locations(self, state: ForwardState,
                            img_idx: int) -> InstanceData:
        """Every place a candidate of one image can come from, whatever its
        score: dense heads each (level, prior), R-CNNs each proposal, DETR each
        query. Fields: the family's identity fields (those
        :meth:`candidate_scalars` reads, e.g. ``cand_level``/``cand_index``)
        and nothing else; adding ``labels`` (any class) makes the rows
        explainable as if they were detections of that class.
        """
        raise NotImplementedError(
            f'{type(self).__name__} cannot enumerate its candidates')

    def pre_nms_candidates(self, state: ForwardState,
                           img_idx: int) -> InstanceData:
        """The candidates the detector's own NMS received for one image
        (after its score threshold and pre-NMS top-k), with the identity
        fields, ``labels``, ``scores`` and ``bboxes`` (original-image pixels)
        the final detections carry.

        Raises:
            ValueError: For families without NMS (DETR).
        """
        raise ValueError(f'{type(self).__name__} has no NMS to take '
                         'suppressed candidates from')

    def candidate_scalars_on_inputs(self, inputs: Tensor,
                                    state: ForwardState, img_idx: int,
                                    det_ids: Sequence[int]) -> Tensor:
        """Scalars of given candidates when the detector sees new inputs.

        Row k of ``inputs`` (e.g. a perturbed copy of image ``img_idx``, of
        the same size) is run through the detector and the exact candidate
        of detection ``det_ids[k]`` of ``state`` is read on it (not re-matched
        among the new outputs). Used by perturbation explainers (BBAM).

        Args:
            inputs (Tensor): (K, C, H, W) preprocessed, same H, W as the
                state's input.
            state (ForwardState): The forward that found the detections.
            img_idx (int): Image of ``state`` the detections belong to.
            det_ids (Sequence[int]): K detection indices into
                ``state.results[img_idx]``.

        Returns:
            Tensor: (K, len(ATTRIBUTES)), with the graph to ``inputs``.

        Raises:
            TypeError: For families that do not implement it.
        """
        raise TypeError(f'{type(self).__name__} cannot read candidates on '
                        'new inputs (dense heads and two-stage detectors '
                        'can)')

    # -- generic exact path ----------------------------------------------------
    def exact_gradients(self, state: ForwardState, img_idx: int,
                        det_ids: Sequence[int], attr_ids: Sequence[int]
                        ) -> List[LevelGradients]:
        """One autograd call per (detection, attribute): the reference path.

        Each call differentiates a single scalar w.r.t. the leaves, so nothing
        accumulates across detections in ``.grad``. Memory is bounded by the
        number of detections callers pass (``ODAM.chunk_size``): on several
        levels (dense heads, R-CNN) each pair's gradient is cut to the
        bounding box of its non-zero cells right away (a receptive field, an
        RoI's footprint), so a chunk keeps windows, not full maps; with a
        single leaf map (DETR), which every pair reaches as a whole, the
        gradients are written into one (P, C, H, W) buffer.
        """
        scalars = self.candidate_scalars(state, img_idx)
        num_attrs = len(ATTRIBUTES)
        pairs = [(det, attr) for det in det_ids for attr in attr_ids]
        in_place = len(state.activations) == 1
        per_level: dict = {}  # level -> (buffer or crops, offsets, pair ids)
        for det, attr in pairs:
            grads = torch.autograd.grad(
                scalars[det, attr], state.activations, retain_graph=True,
                allow_unused=True)
            for level, grad in enumerate(grads):
                if grad is None or not bool(grad[img_idx].any()):
                    continue
                grad = grad[img_idx]
                if level not in per_level:
                    per_level[level] = (grad.new_empty(
                        (len(pairs), *grad.shape)) if in_place else [], [],
                        [])
                store, offsets, ids = per_level[level]
                if in_place:  # rows in order of the pairs that reach it
                    store[len(ids)] = grad
                    offsets.append((0, 0))
                else:  # a copy of the support: frees the full gradient
                    y0, x0, y1, x1 = support_box(grad.ne(0).any(dim=0))
                    store.append(grad[:, y0:y1, x0:x1].clone())
                    offsets.append((y0, x0))
                ids.append(det * num_attrs + attr)
            del grads
        out = []
        for level, (store, offsets, ids) in sorted(per_level.items()):
            if in_place:
                stacked = store[:len(ids)]
            else:  # one window size per level: pad each crop below/right
                height = max(g.shape[-2] for g in store)
                width = max(g.shape[-1] for g in store)
                stacked = store[0].new_zeros(
                    (len(store), store[0].shape[0], height, width))
                for k in range(len(store)):
                    crop = store[k]
                    stacked[k, :, :crop.shape[-2], :crop.shape[-1]] = crop
                    store[k] = None  # free as the windows fill
            out.append(LevelGradients(
                level=level, grads=stacked,
                offsets=torch.tensor(offsets, dtype=torch.long,
                                     device=stacked.device).reshape(-1, 2),
                pair_index=torch.tensor(ids, device=stacked.device)))
        return out
