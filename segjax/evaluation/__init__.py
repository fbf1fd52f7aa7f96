"""Metrics: mIoU and pixel accuracy, COCO mask AP, panoptic quality.

The mIoU module (JAX: its confusion matrix runs on device) loads on first use, so the scoring
worker processes (scoring.py) import this package without JAX.
"""
import importlib

from segjax.evaluation.coco import CocoMaskEvaluator, score_files
from segjax.evaluation.panoptic_quality import PanopticQuality, panoptic_from_labels

_LAZY = {"confusion_matrix": "segjax.evaluation.miou", "semantic_metrics": "segjax.evaluation.miou"}


def __getattr__(name):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
