"""Semantic metrics from a confusion matrix, which is a sum: computed on device, batch by batch."""
import jax.numpy as jnp
import numpy as np


def confusion_matrix(pred, labels, valid, num_classes, ignore_label):
  """(num_classes, num_classes) int32 counts, rows = truth, columns = prediction.

  Pixels labelled `ignore_label` and images whose `valid` flag is False (batch padding) are left out.
  """
  keep = (labels != ignore_label) & valid[:, None, None]
  index = jnp.where(keep, labels * num_classes + pred, 0)
  counts = jnp.bincount(index.ravel(), weights=keep.ravel().astype(jnp.int32),
                        length=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def semantic_metrics(confusion, class_names):
  """mIoU (over classes present in truth or prediction), per-class IoU and pixel accuracy.

  A class absent from both has no IoU (None) and stays out of the mean; with no labelled pixel at
  all, mIoU and accuracy are 0, so metrics.jsonl never holds a NaN.
  """
  confusion = np.asarray(confusion, np.float64)
  tp = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - tp
  present = union > 0
  iou = np.where(present, tp / np.maximum(union, 1), np.nan)
  return {
      "miou": float(iou[present].mean()) if present.any() else 0.0,
      "pixel_acc": float(tp.sum() / max(confusion.sum(), 1)),
      "iou_per_class": {name: (None if np.isnan(v) else float(v)) for name, v in zip(class_names, iou)},
  }
