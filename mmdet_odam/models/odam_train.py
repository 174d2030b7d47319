"""Odam-Train (Sec. 3.2, App. A.1): explanation consistency and separation.

For every GT object p the ODAM maps (of the confidence of the GT class) of its
positive proposals are compared with the map of its best positive, H_best(p)
(highest IoU of the predicted box with the GT box):

    L_con = sum_p sum_{n in P(p), n != best} -log cos(H_best(p), H_n)
    L_sep = sum_p sum_{m of other objects} -log(1 - cos(H_best(p), H_m))
    L = L_det + w * (L_con + L_sep) / N,   N = number of pairs.

Decisions (see README):

* Grouping is per GT object *inside its own image*; negatives come only from
  other objects of the same image (``negatives='overlap'``: objects whose GT
  box overlaps p's, the authors' choice; ``'crowd'``: objects whose GT box
  has IoU > 0.5 with p's, the hard pairs of Odam-NMS; ``'all'``: every other
  object).
* dY/dA is a constant (the authors' choice; no double backward, which mmcv's
  RoIAlign does not support anyway) and A stays in the graph, so the losses
  reach the features: neck and backbone. ``second_order=True`` keeps the graph
  of dY/dA too, so the losses also reach the head's parameters (dense heads).
* Cosine is clamped to [eps, 1 - eps]; pairs with an all-zero map are skipped
  (no direction to compare); an image with no or one GT object contributes
  only the pairs it has; with no pair at all both losses are an exact zero
  still connected to the graph.
* Maps: ODAM of the class *logit* (no sigmoid saturation), adaptive Gaussian
  Phi sized to the GT box, resampled to a grid with short edge
  ``grid_short_edge`` and vectorised.

Families: dense heads (FCOS-like point heads and anchor heads; neck features,
receptive-field patches), two-stage R-CNNs (RoI features as the paper) and
DETR (positives of an object = its Hungarian-matched query in every decoder
layer, the last layer's being the detection; backbone/neck features).
"""
from contextlib import ExitStack, contextmanager
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.dense_heads import AnchorFreeHead, AnchorHead, DETRHead
from mmdet.models.detectors import (DetectionTransformer, SingleStageDetector,
                                    TwoStageDetector)
from mmdet.registry import MODELS
from mmdet.structures.bbox import (bbox2roi, bbox_cxcywh_to_xyxy,
                                   bbox_overlaps, get_box_tensor)
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..explainers.adapters.dense import head_adapter
from ..explainers.adapters.receptive_field import record_norm_stats
from ..explainers.heatmap import cell_shift, odam_map, smoothing_sigmas
from .candidate_maps import CandidateMapper, resample_to_grid

NEGATIVE_MODES = ('overlap', 'all', 'crowd')
#: GT IoU above which two objects are a 'crowd' pair (CrowdHuman's crowd set)
CROWD_IOU = 0.5


def odam_pair_losses(maps: Tensor, groups: Tensor, group_images: Tensor,
                     best: Tensor, negatives: Tensor, eps: float = 1e-4
                     ) -> Tuple[Tensor, Tensor, int]:
    """Summed consistency and separation terms of Eq. 3 and the pair count.

    Args:
        maps (Tensor): Vectorised maps of all positives, (M, D).
        groups (Tensor): GT object (group) of each positive, (M, ), ids in
            [0, G) unique over the whole batch.
        group_images (Tensor): Image of each group, (G, ).
        best (Tensor): Index into ``maps`` of each group's best positive, (G, );
            -1 for a group without positives.
        negatives (Tensor): (G, G) bool, ``negatives[p, q]``: positives of
            object q are separation pairs for object p (only honoured within
            one image).
        eps (float): Cosine clamp.

    Returns:
        tuple: ``(con_sum, sep_sum, num_pairs)``; the sums are 0-dim tensors.
    """
    zero = maps.sum() * 0
    if maps.shape[0] == 0:
        return zero, zero, 0
    maps = maps.float()
    norms = maps.norm(dim=1)
    valid = norms > 1e-12
    unit = maps / norms.clamp(min=1e-12)[:, None]
    anchors = ((best >= 0) & valid[best.clamp(min=0)]).nonzero()[:, 0]
    if len(anchors) == 0:
        return zero, zero, 0
    best_idx = best[anchors]
    cos = (unit[best_idx] @ unit.t()).clamp(eps, 1 - eps)  # (G', M)
    index = torch.arange(len(maps), device=maps.device)
    member = groups[None] == anchors[:, None]
    con_mask = member & (index[None] != best_idx[:, None]) & valid[None]
    same_image = group_images[groups][None] == group_images[anchors][:, None]
    sep_mask = (~member) & same_image & negatives[anchors][:, groups] & \
        valid[None]
    con = -(cos[con_mask]).log().sum()
    sep = -(1 - cos[sep_mask]).log().sum()
    num = int(con_mask.sum()) + int(sep_mask.sum())
    return con + zero, sep + zero, num


def best_per_object(gt_index: Tensor, ious: Tensor, num_gt: int) -> Tensor:
    """Index of each object's best positive (highest IoU, first on ties).

    Args:
        gt_index (Tensor): Object of each positive, (P, ).
        ious (Tensor): IoU of each positive's predicted box with its GT, (P, ).
        num_gt (int): G.

    Returns:
        Tensor: (G, ) indices into the positives, -1 for objects without one.
    """
    best_iou = ious.new_full((num_gt, ), -1.0).scatter_reduce(
        0, gt_index, ious, 'amax')
    index = torch.arange(len(ious), device=ious.device)
    is_best = ious == best_iou[gt_index]
    none = len(ious)
    first = torch.full((num_gt, ), none, dtype=torch.long,
                       device=ious.device).scatter_reduce(
        0, gt_index, torch.where(is_best, index, none), 'amin')
    return torch.where(first == none, -1, first)


def negative_pairs(gt_boxes: Tensor, mode: str) -> Tensor:
    """Which objects' positives are negatives for each object of one image.

    Args:
        gt_boxes (Tensor): (G, 4).
        mode (str): ``'overlap'`` (GT boxes intersect), ``'crowd'`` (GT IoU
            > 0.5: the pairs an NMS at T_iou 0.5 can merge) or ``'all'``.

    Returns:
        Tensor: (G, G) bool, False on the diagonal.
    """
    num = len(gt_boxes)
    if mode == 'all':
        pairs = torch.ones((num, num), dtype=torch.bool,
                           device=gt_boxes.device)
    else:
        threshold = CROWD_IOU if mode == 'crowd' else 0.0
        pairs = bbox_overlaps(gt_boxes, gt_boxes) > threshold
    return pairs & ~torch.eye(num, dtype=torch.bool, device=gt_boxes.device)


def _gather_cells(maps: Tensor, img: int, flat: Tensor, anchors: int,
                  channels: int) -> Tensor:
    """Values of (B, A*K, H, W) maps at flat (position, anchor) indices.

    Returns:
        Tensor: (P, K).
    """
    _, _, height, width = maps.shape
    grouped = maps[img].reshape(anchors, channels, height * width)
    pos, anchor = flat // anchors, flat % anchors
    return grouped[anchor, :, pos]


def _cap_per_object(gt_index: Tensor, ious: Tensor, max_total: int) -> Tensor:
    """Keep at most ~max_total positives, the best ones of every object.

    Args:
        gt_index (Tensor): Object of each positive, (P, ).
        ious (Tensor): IoU of each positive's predicted box with its GT, (P, ).
        max_total (int): Cap; <= 0 keeps all.

    Returns:
        Tensor: Kept indices, (P', ).
    """
    if max_total <= 0 or len(gt_index) <= max_total:
        return torch.arange(len(gt_index), device=gt_index.device)
    num_objects = int(gt_index.unique().numel())
    per_object = max(1, -(-max_total // num_objects))
    # order by object, best IoU first inside it; rank = place in its object
    by_iou = torch.argsort(ious, descending=True, stable=True)
    order = by_iou[torch.argsort(gt_index[by_iou], stable=True)]
    sorted_gt = gt_index[order]
    place = torch.arange(len(order), device=order.device)
    first = torch.zeros_like(place).scatter_reduce(
        0, sorted_gt, place, 'amin', include_self=False)
    return order[place - first[sorted_gt] < per_object].sort().values


@MODELS.register_module()
class OdamTrainLoss(nn.Module):
    """Odam-Train losses for a detector (no parameters of its own).

    Args:
        loss_weight (float): w above (authors: 0.5 FCOS, 0.2 R-CNN).
        grid_short_edge (int): Maps are compared on a grid with this short
            edge (input-image aspect ratio).
        max_positives (int): Cap per image (the best positives of every object
            are kept); <= 0 means no cap.
        negatives (str): ``'overlap'``, ``'crowd'`` or ``'all'`` (see module
            docstring).
        score_target (str): ``'logit'`` or ``'score'`` (see ``CandidateMapper``).
        smooth (str | float): Phi of the maps.
        sigma_scale (float): Adaptive sigma fraction.
        min_sigma (float): Adaptive sigma lower bound (cells).
        second_order (bool): Backpropagate through dY/dA as well.
        eps (float): Cosine clamp.
        cell_position (str): Where feature cells lie in the image (see
            ``CandidateMapper``).
    """

    def __init__(self, loss_weight: float = 0.5, grid_short_edge: int = 32,
                 max_positives: int = 64, negatives: str = 'overlap',
                 score_target: str = 'logit', smooth='adaptive',
                 sigma_scale: float = 0.1, min_sigma: float = 0.5,
                 second_order: bool = False, eps: float = 1e-4,
                 cell_position: str = 'grid') -> None:
        super().__init__()
        if negatives not in NEGATIVE_MODES:
            raise ValueError(f'negatives must be one of {NEGATIVE_MODES}, got '
                             f'{negatives!r}')
        self.loss_weight = float(loss_weight)
        self.max_positives = int(max_positives)
        self.negatives = negatives
        self.second_order = bool(second_order)
        self.eps = float(eps)
        self.mapper = CandidateMapper(grid_short_edge, score_target, smooth,
                                      sigma_scale, min_sigma,
                                      cell_position=cell_position)

    # -- the loss from per-image positives ------------------------------------
    def forward(self, positives: Sequence[InstanceData],
                gt_boxes: Sequence[Tensor]) -> Dict[str, Tensor]:
        """Losses from the positives of each image.

        Args:
            positives (Sequence[InstanceData]): Per image: ``maps`` (P, H, W)
                in the graph, ``gt_index`` (P, ) into that image's GT boxes,
                ``ious`` (P, ) of the predicted box with its GT box.
            gt_boxes (Sequence[Tensor]): Per image GT boxes (G_i, 4).

        Returns:
            dict: ``loss_odam_con`` and ``loss_odam_sep`` (0-dim tensors).
        """
        maps, groups, group_images, best = [], [], [], []
        blocks = []
        offset, count = 0, 0
        for img, (pos, boxes) in enumerate(zip(positives, gt_boxes)):
            num_gt = len(boxes)
            img_best = torch.full((num_gt, ), -1, dtype=torch.long,
                                  device=boxes.device)
            if len(pos):
                img_best = best_per_object(pos.gt_index, pos.ious, num_gt)
                img_best = torch.where(img_best >= 0, img_best + count,
                                       img_best)
                maps.append(pos.maps.flatten(1))
                groups.append(pos.gt_index + offset)
                count += len(pos)
            best.append(img_best)
            group_images.append(torch.full_like(img_best, img))
            blocks.append(negative_pairs(boxes, self.negatives))
            offset += num_gt
        device = gt_boxes[0].device if len(gt_boxes) else None
        if not maps:
            zero = torch.zeros((), device=device)
            return dict(loss_odam_con=zero, loss_odam_sep=zero)
        negatives = torch.block_diag(*[b.float() for b in blocks]) > 0
        con, sep, num = odam_pair_losses(
            torch.cat(maps), torch.cat(groups), torch.cat(group_images),
            torch.cat(best), negatives, self.eps)
        scale = self.loss_weight / max(num, 1)
        return dict(loss_odam_con=con * scale, loss_odam_sep=sep * scale)

    # -- positives per family ---------------------------------------------------
    def dense_positives(self, head, feats: Sequence[Tensor], norm_stats: dict,
                        outs: Sequence[List[Tensor]],
                        batch_gt_instances: Sequence[InstanceData],
                        batch_img_metas: Sequence[dict],
                        assigned: Optional[Sequence[tuple]] = None
                        ) -> List[InstanceData]:
        """Positives of a dense head (its own target assignment) with maps.

        Args:
            head: FCOS-like (``AnchorFreeHead`` with ``regress_ranges``) or
                ``AnchorHead`` (RetinaNet).
            feats (Sequence[Tensor]): Neck outputs in the graph, (B, C, H, W).
            norm_stats (dict): GroupNorm statistics of the head's forward.
            outs (Sequence[list[Tensor]]): The head's outputs (cls, bbox, ...).
            batch_gt_instances, batch_img_metas: As the head's ``loss``.
            assigned (Sequence[tuple], optional): Per image, what the head's
                ``_get_targets_single`` returned during its own loss; recomputed
                when not given.

        Returns:
            list[InstanceData]: Per image ``maps``, ``gt_index``, ``ious``.
        """
        if not isinstance(head, (AnchorFreeHead, AnchorHead)):
            raise TypeError(f'Odam-Train has no target recovery for '
                            f'{type(head).__name__} (only anchor and '
                            'anchor-free heads: FCOS, RetinaNet, ATSS, GFL, '
                            'RTMDet)')
        adapter = head_adapter(head)
        featmap_sizes = [f.shape[-2:] for f in feats]
        device = feats[0].device
        priors = head.prior_generator.grid_priors(
            featmap_sizes, dtype=feats[0].dtype, device=device)
        per_level = [len(p) for p in priors]
        starts = torch.tensor([0] + per_level, device=device).cumsum(0)
        anchors = head.num_base_priors
        candidates, gts = [], []
        for img, (gt, meta) in enumerate(zip(batch_gt_instances,
                                             batch_img_metas)):
            flat, gt_index = self._dense_assignment(
                head, priors, gt, meta, per_level,
                assigned[img] if assigned else None)
            gt_boxes = get_box_tensor(gt.bboxes)
            level = torch.bucketize(flat, starts[1:], right=True)
            index = flat - starts[level]
            pred = flat.new_zeros((len(flat), 4), dtype=torch.float32)
            for lvl in level.unique().tolist():
                sel = (level == lvl).nonzero()[:, 0]
                deltas = _gather_cells(outs[1][lvl].detach(), img, index[sel],
                                       anchors, adapter.box_channels())
                if getattr(head, 'norm_on_bbox', False):  # FCOS in training
                    deltas = deltas * head.prior_generator.strides[lvl][0]
                # the family's own decoding (GFL: distribution integral)
                pred[sel] = adapter.decode(priors[lvl][index[sel]], deltas,
                                           lvl).float()
            ious = bbox_overlaps(pred, gt_boxes[gt_index], is_aligned=True) \
                if len(flat) else pred.new_zeros(0)
            keep = _cap_per_object(gt_index, ious, self.max_positives)
            cand = InstanceData(
                cand_level=level[keep], cand_index=index[keep],
                labels=gt.labels[gt_index[keep]],
                bboxes=gt_boxes[gt_index[keep]], gt_index=gt_index[keep],
                ious=ious[keep])
            candidates.append(cand)
            gts.append(gt_boxes)
        maps = self.mapper.dense(
            head, feats, norm_stats, candidates,
            [m['img_shape'] for m in batch_img_metas], self.second_order)
        for cand, img_maps in zip(candidates, maps):
            cand.maps = img_maps
        return candidates

    @staticmethod
    def _dense_assignment(head, priors: List[Tensor], gt: InstanceData,
                          meta: dict, per_level: List[int],
                          assigned: Optional[tuple] = None
                          ) -> Tuple[Tensor, Tensor]:
        """Flat (all levels) indices of the head's positives and their GT.

        Uses the output of the head's own ``_get_targets_single``
        (``assigned``, or a new call); the GT index, which MMDetection's FCOS
        discards, is recovered from the regression target (the assigned GT box
        itself).
        """
        gt_boxes = get_box_tensor(gt.bboxes)
        if len(gt_boxes) == 0:
            empty = gt_boxes.new_zeros(0, dtype=torch.long)
            return empty, empty
        if isinstance(head, AnchorFreeHead) and hasattr(head, 'regress_ranges'):
            points = torch.cat(priors)
            ranges = torch.cat([
                p.new_tensor(r)[None].expand(len(p), 2)
                for p, r in zip(priors, head.regress_ranges)])
            labels, targets = assigned or head._get_targets_single(
                gt, points=points, regress_ranges=ranges,
                num_points_per_lvl=per_level)
            flat = (labels < head.num_classes).nonzero()[:, 0]
            pts = points[flat, :2]
            boxes = torch.cat([pts - targets[flat, :2],
                               pts + targets[flat, 2:]], dim=1)
            gt_index = (boxes[:, None] - gt_boxes[None]).abs().sum(-1).argmin(1)
            return flat, gt_index
        if isinstance(head, AnchorHead):
            anchors = torch.cat(priors)
            valid = anchors.new_ones(len(anchors), dtype=torch.bool)
            result = assigned or head._get_targets_single(
                anchors, valid, gt, meta, None, unmap_outputs=True)
            # RetinaNet returns labels first, ATSS-style heads (ATSS, GFL,
            # RTMDet) their anchors first: the labels are the first integer
            # tensor; the sampling result is last in both
            labels = next(t for t in result if isinstance(t, Tensor) and
                          not t.is_floating_point())
            sampling = result[-1]
            flat = (labels != head.num_classes).nonzero()[:, 0]
            # positives are in ascending anchor order in both
            return flat, sampling.pos_assigned_gt_inds
        raise TypeError(f'Odam-Train has no target recovery for '
                        f'{type(head).__name__}')

    def rcnn_positives(self, roi_head, sampling_results: list,
                       bbox_results: dict, batch_img_metas: Sequence[dict]
                       ) -> List[InstanceData]:
        """Positive RoIs of a ``StandardRoIHead`` with maps at RoI features.

        Args:
            roi_head: The RoI head.
            sampling_results (list[SamplingResult]): Its sampling of the batch.
            bbox_results (dict): Output of its ``bbox_loss`` (``bbox_feats`` in
                the graph, ``bbox_pred``).
            batch_img_metas (Sequence[dict]): Image metas.

        Returns:
            list[InstanceData]: Per image ``maps``, ``gt_index``, ``ious``.
        """
        bbox_head = roi_head.bbox_head
        rois = bbox2roi([res.priors for res in sampling_results])
        bbox_pred = bbox_results['bbox_pred'].detach()
        starts = [0]
        for res in sampling_results:
            starts.append(starts[-1] + len(res.priors))
        selected, infos = [], []
        for img, res in enumerate(sampling_results):
            num_pos = len(res.pos_inds)
            sel = torch.arange(starts[img], starts[img] + num_pos,
                               device=rois.device)
            labels = res.pos_gt_labels
            deltas = bbox_pred[sel]
            if not bbox_head.reg_class_agnostic and len(sel):
                deltas = deltas.view(num_pos, -1, bbox_head.bbox_coder.
                                     encode_size)[torch.arange(num_pos),
                                                  labels]
            pred = bbox_head.bbox_coder.decode(rois[sel, 1:], deltas) \
                if len(sel) else rois.new_zeros((0, 4))
            gt_boxes = get_box_tensor(res.pos_gt_bboxes)
            ious = bbox_overlaps(get_box_tensor(pred), gt_boxes,
                                 is_aligned=True) if len(sel) else \
                pred.new_zeros(0)
            keep = _cap_per_object(res.pos_assigned_gt_inds, ious,
                                   self.max_positives)
            selected.append(sel[keep])
            infos.append((res.pos_assigned_gt_inds[keep], ious[keep],
                          labels[keep]))
        sel = torch.cat(selected)
        labels = torch.cat([info[2] for info in infos])
        maps = self.mapper.roi(bbox_head, bbox_results['bbox_feats'][sel],
                               rois[sel], labels,
                               [m['img_shape'] for m in batch_img_metas],
                               create_graph=self.second_order)
        return [InstanceData(maps=m, gt_index=g, ious=i)
                for m, (g, i, _) in zip(maps, infos)]

    def detr_positives(self, feats: Sequence[Tensor], all_cls: Tensor,
                       all_boxes: Tensor, assignments: List[Tensor],
                       batch_gt_instances: Sequence[InstanceData],
                       batch_img_metas: Sequence[dict]) -> List[InstanceData]:
        """Matched queries of every decoder layer, maps on ``feats``.

        Args:
            feats (Sequence[Tensor]): Encoder-input features in the graph,
                each (B, C, H, W).
            all_cls (Tensor): Class logits (L, B, Q, K).
            all_boxes (Tensor): Normalised (cx, cy, w, h) boxes (L, B, Q, 4).
            assignments (list[Tensor]): The Hungarian ``gt_inds`` (Q, ) of each
                (layer, image), layer-major, 1-based (0: unmatched).
            batch_gt_instances, batch_img_metas: As the head's ``loss``.

        Returns:
            list[InstanceData]: Per image ``maps``, ``gt_index``, ``ious``.
        """
        num_layers, batch = all_cls.shape[:2]
        out = []
        for img in range(batch):
            meta, gt = batch_img_metas[img], batch_gt_instances[img]
            gt_boxes = get_box_tensor(gt.bboxes)
            img_h, img_w = meta['img_shape'][:2]
            scale = all_boxes.new_tensor([img_w, img_h, img_w, img_h])
            scores, gt_index, ious = [], [], []
            for layer in range(num_layers):
                inds = assignments[layer * batch + img]
                query = (inds > 0).nonzero()[:, 0]
                g = inds[query] - 1
                scores.append(all_cls[layer, img, query, gt.labels[g]])
                pred = bbox_cxcywh_to_xyxy(
                    all_boxes[layer, img, query].detach()) * scale
                ious.append(bbox_overlaps(pred, gt_boxes[g], is_aligned=True))
                gt_index.append(g)
            scores, gt_index, ious = (torch.cat(scores), torch.cat(gt_index),
                                      torch.cat(ious))
            keep = _cap_per_object(gt_index, ious, self.max_positives)
            maps = self._full_map_positives(
                feats, img, scores[keep], gt_boxes[gt_index[keep]], meta)
            out.append(InstanceData(maps=maps, gt_index=gt_index[keep],
                                    ious=ious[keep]))
        return out

    def _full_map_positives(self, feats: Sequence[Tensor], img: int,
                            scores: Tensor, boxes: Tensor,
                            meta: dict) -> Tensor:
        """Maps of scalars that see the whole feature map (one backward per
        scalar, vectorised), summed over levels on the common grid."""
        img_shape = meta['img_shape'][:2]
        grid = self.mapper.grid_size(img_shape)
        maps = feats[0].new_zeros((len(scores), ) + grid)
        if len(scores) == 0:
            return maps
        grads = torch.autograd.grad(
            scores, list(feats), torch.eye(len(scores), device=scores.device),
            retain_graph=True, create_graph=self.second_order,
            is_grads_batched=True, allow_unused=True)
        pad_h = meta.get('batch_input_shape', meta['pad_shape'])[0]
        for feat, grad in zip(feats, grads):
            if grad is None:
                continue
            stride = float(pad_h) / feat.shape[-2]
            sigmas = smoothing_sigmas(
                self.mapper.smooth, boxes[:, 2:] - boxes[:, :2],
                boxes.new_full((len(boxes), ), stride),
                self.mapper.sigma_scale, self.mapper.min_sigma)
            level = odam_map(grad[:, img], feat[img],
                             self.mapper.smooth if sigmas is not None else
                             'none', sigmas, self.mapper.grad_mode)
            region = boxes.new_tensor([[0, 0, feat.shape[-1] * stride,
                                        feat.shape[-2] * stride]]) + \
                cell_shift(stride, self.mapper.cell_position)
            maps = maps + resample_to_grid(
                level, region.expand(len(level), 4), img_shape, grid)
        return maps


@contextmanager
def _wrap(obj, name: str, wrapper_factory):
    """Temporarily replace ``obj.name`` by ``wrapper_factory(original)``."""
    had_own = name in vars(obj)
    original = getattr(obj, name)
    setattr(obj, name, wrapper_factory(original))
    try:
        yield
    finally:
        if had_own:
            setattr(obj, name, original)
        else:
            delattr(obj, name)


def _recording(store: dict, key: str, keep_output: bool = False):
    def factory(original):
        def recorded(*args, **kwargs):
            out = original(*args, **kwargs)
            store.setdefault(key, []).append(
                (args, kwargs, out if keep_output else None))
            return out
        return recorded
    return factory


def odam_train_losses(detector, odam: OdamTrainLoss, batch_inputs: Tensor,
                      batch_data_samples: list, loss_fn) -> dict:
    """Run ``loss_fn`` (the detector's own ``loss``) and add Odam-Train.

    Inputs of the Odam-Train terms are recorded from the detector's own loss
    computation (features, head outputs, target assignment), so nothing is run
    twice and the detection losses are exactly MMDetection's.
    """
    check_odam_train_support(detector)
    store: dict = {}
    with ExitStack() as stack:
        stack.enter_context(_wrap(detector, 'extract_feat',
                                  _recording(store, 'feats', True)))
        if isinstance(detector, SingleStageDetector):
            head = detector.bbox_head
            norm_stats = stack.enter_context(record_norm_stats(head))
            stack.enter_context(_wrap(head, 'loss_by_feat',
                                      _recording(store, 'loss_by_feat')))
            stack.enter_context(_wrap(head, '_get_targets_single',
                                      _recording(store, 'assigned', True)))
        elif isinstance(detector, TwoStageDetector):
            stack.enter_context(_wrap(detector.roi_head, 'bbox_loss',
                                      _recording(store, 'bbox_loss', True)))
        elif isinstance(detector, DetectionTransformer) and isinstance(
                detector.bbox_head, DETRHead):
            head = detector.bbox_head
            stack.enter_context(_wrap(head, 'loss_by_feat',
                                      _recording(store, 'loss_by_feat')))
            stack.enter_context(_wrap(head.assigner, 'assign',
                                      _recording(store, 'assign', True)))
        else:
            raise TypeError(f'Odam-Train does not support '
                            f'{type(detector).__name__}')
        losses = loss_fn(batch_inputs, batch_data_samples)
    feats = store['feats'][0][2]
    metas = [s.metainfo for s in batch_data_samples]
    gts = [s.gt_instances for s in batch_data_samples]
    if isinstance(detector, SingleStageDetector):
        args = store['loss_by_feat'][0][0]
        assigned = [out for _, _, out in store.get('assigned', [])]
        positives = odam.dense_positives(
            detector.bbox_head, feats, norm_stats, args, gts, metas,
            assigned if len(assigned) == len(gts) else None)
    elif isinstance(detector, TwoStageDetector):
        (_, sampling_results), _, bbox_results = store['bbox_loss'][0]
        positives = odam.rcnn_positives(detector.roi_head, sampling_results,
                                        bbox_results, metas)
    else:
        all_cls, all_boxes = store['loss_by_feat'][0][0][:2]
        assignments = [out.gt_inds for _, _, out in store['assign']]
        positives = odam.detr_positives(feats, all_cls, all_boxes,
                                        assignments, gts, metas)
    losses.update(odam(positives, [get_box_tensor(g.bboxes) for g in gts]))
    return losses


def check_odam_train_support(detector) -> None:
    """Refuse, in one line, detectors whose losses Odam-Train cannot read.

    Raises:
        TypeError: Cascade R-CNN (one ``bbox_loss`` per stage, called with the
            stage) and DINO (its head's loss sees the denoising queries in
            front of the matched ones).
    """
    from mmdet.models.detectors import DINO
    from mmdet.models.roi_heads import CascadeRoIHead
    if isinstance(getattr(detector, 'roi_head', None), CascadeRoIHead) or \
            isinstance(detector, DINO):
        raise TypeError(f'Odam-Train does not support '
                        f'{type(detector).__name__}: its losses are not '
                        'those of one StandardRoIHead / DETRHead')


def install_odam_train(detector, odam: OdamTrainLoss,
                       active=lambda: True) -> None:
    """Make ``detector.loss`` add Odam-Train losses (idempotent).

    Args:
        detector: An unwrapped MMDetection detector.
        odam (OdamTrainLoss): The loss.
        active (callable): Returns False to skip the terms (warm-up); they are
            then logged as zeros.
    """
    check_odam_train_support(detector)
    original = getattr(detector, '_odam_original_loss', None) or detector.loss

    def loss(batch_inputs, batch_data_samples):
        if not active():
            losses = original(batch_inputs, batch_data_samples)
            zero = batch_inputs.new_zeros(())
            losses.update(loss_odam_con=zero, loss_odam_sep=zero)
            return losses
        return odam_train_losses(detector, odam, batch_inputs,
                                 batch_data_samples, original)

    detector._odam_original_loss = original
    detector.loss = loss
