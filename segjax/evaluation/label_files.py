"""Predicted label maps as PNGs of the dataset's own label ids (Cityscapes labelIds), named after
each image, so the dataset's official script (cityscapesscripts) scores them as it scores entries."""
import os

import numpy as np
from PIL import Image


def write_labels(directory, file_name, semantic, label_ids):
  """DIR/<file_name>_pred_labelIds.png: class index c of each pixel written as label_ids[c]."""
  os.makedirs(directory, exist_ok=True)
  ids = np.asarray(label_ids)[np.asarray(semantic)]
  dtype = np.uint8 if ids.max(initial=0) < 256 else np.uint16
  path = os.path.join(directory, f"{file_name}_pred_labelIds.png")
  Image.fromarray(ids.astype(dtype)).save(path)
  return path
