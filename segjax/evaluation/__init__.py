"""Metrics: mIoU and pixel accuracy now; COCO mask AP and panoptic quality with the instance head."""
from segjax.evaluation.semantic import confusion_matrix, semantic_metrics
