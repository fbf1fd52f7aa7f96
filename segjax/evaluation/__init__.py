"""Metrics: mIoU and pixel accuracy, COCO mask AP, panoptic quality."""
from segjax.evaluation.coco import CocoMaskEvaluator, score_files
from segjax.evaluation.panoptic_quality import PanopticQuality, panoptic_from_labels
from segjax.evaluation.miou import confusion_matrix, semantic_metrics
