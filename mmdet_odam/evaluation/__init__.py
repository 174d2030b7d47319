from .crowd_recall import (CrowdHumanRecallMetric, crowd_gt_mask,
                           format_recall_table, greedy_match_recall,
                           recall_counts)
from .explained_detector import ExplainedDetector, candidate_predictions
from .explanation_metric import ExplanationMetric
from .explanation_metrics import (VEA_THRESHOLDS, box_region, compactness,
                                  curve_auc, energy_pointing_game,
                                  match_well_detected,
                                  object_discrimination_index,
                                  perturbation_curve, pointing_game,
                                  steps_for_area, tracked_score, vea_auc,
                                  vea_curve)

__all__ = [
    'CrowdHumanRecallMetric', 'crowd_gt_mask', 'greedy_match_recall',
    'recall_counts', 'format_recall_table',
    'ExplanationMetric', 'ExplainedDetector', 'candidate_predictions',
    'VEA_THRESHOLDS', 'box_region', 'pointing_game', 'energy_pointing_game',
    'compactness', 'object_discrimination_index', 'vea_curve', 'vea_auc',
    'perturbation_curve', 'curve_auc', 'steps_for_area', 'match_well_detected',
    'tracked_score'
]
