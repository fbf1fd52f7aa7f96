"""Draws the built-in synthetic scenes with NumPy: no TensorFlow, no files, no download.

The class of an object is its shape (disk, square, triangle) and never its colour: every object gets a
random colour and shading, so a model must look at outlines, not pixels. Same-class objects are often
placed touching or overlapping, which is what makes instance segmentation harder than semantic.
"""
import numpy as np

CLASS_NAMES = ("background", "disk", "square", "triangle")
MIN_VISIBLE_FRACTION = 0.7  # more hidden and a shape is ambiguous even to a person


def _shape_mask(kind, yy, xx, cy, cx, radius, angle):
  """Boolean mask of one shape on the coordinate window (yy, xx)."""
  dy, dx = yy - cy, xx - cx
  if kind == 1:  # disk
    return dy * dy + dx * dx <= radius * radius
  c, s = np.cos(angle), np.sin(angle)
  u, v = c * dx + s * dy, -s * dx + c * dy
  if kind == 2:  # square with the area of the disk
    half = radius * np.sqrt(np.pi) / 2
    return (np.abs(u) <= half) & (np.abs(v) <= half)
  # equilateral triangle with the area of the disk: inside all three edge half-planes
  inradius = radius * np.sqrt(np.pi / (3 * np.sqrt(3)))
  inside = np.ones_like(u, dtype=bool)
  for k in range(3):
    t = 2 * np.pi * k / 3
    inside &= np.cos(t) * u + np.sin(t) * v <= inradius
  return inside


def _smooth_noise(rng, size, cells, channels):
  """Low-frequency noise: a coarse random grid bilinearly upsampled to size x size."""
  grid = rng.random((cells + 1, cells + 1, channels), dtype=np.float32)
  pos = np.linspace(0, cells, size, dtype=np.float32)
  i = np.minimum(pos.astype(int), cells - 1)
  f = (pos - i)[:, None, None]
  rows = grid[i] * (1 - f) + grid[i + 1] * f  # (size, cells + 1, C)
  return rows[:, i] * (1 - f[:, 0][None]) + rows[:, i + 1] * f[:, 0][None]


def _background(rng, size):
  """A textured background: smooth colour blobs plus oriented stripes."""
  base = 0.25 + 0.5 * _smooth_noise(rng, size, int(rng.integers(2, 6)), 3)
  pos = np.arange(size, dtype=np.float32) / size
  theta, freq = rng.uniform(0, np.pi), rng.uniform(4, 24)
  phase = 2 * np.pi * freq * (np.cos(theta) * pos[None, :] + np.sin(theta) * pos[:, None])
  stripes = np.sin(phase + rng.uniform(0, 2 * np.pi), dtype=np.float32)
  colour = (rng.uniform(0.03, 0.12) * rng.uniform(-1, 1, size=3)).astype(np.float32)
  return base + stripes[..., None] * colour


def draw_scene(seed, size=256, max_objects=8):
  """Draws one scene, a pure function of `seed` (an int or a sequence of ints).

  Returns a dict of `image` (size, size, 3) uint8, `semantic` (size, size) uint8 class ids,
  `instance` (size, size) uint8 instance ids (0 = none), and per instance `label`, `bbox`
  (ymin, xmin, ymax, xmax in [0, 1]) and `area` in pixels, in instance-id order.
  """
  rng = np.random.default_rng(seed)
  image = _background(rng, size)
  ids = np.zeros((size, size), np.uint8)
  objects = []  # (label, full_area)
  scale = size / 256
  wanted = int(rng.integers(3, max_objects + 1))
  for _ in range(4 * wanted):
    if len(objects) == wanted:
      break
    radius = rng.uniform(14, 34) * scale
    if objects and rng.random() < 0.5:  # touch or overlap a same-class object
      anchor = objects[int(rng.integers(len(objects)))]
      kind = anchor["label"]
      direction = rng.uniform(0, 2 * np.pi)
      dist = (anchor["radius"] + radius) * rng.uniform(0.6, 1.0)
      cy, cx = anchor["cy"] + dist * np.sin(direction), anchor["cx"] + dist * np.cos(direction)
    else:
      kind = int(rng.integers(1, len(CLASS_NAMES)))
      cy, cx = rng.uniform(0.1, 0.9, size=2) * size
    reach = int(np.ceil(1.3 * radius)) + 1
    y0, y1 = max(int(cy) - reach, 0), min(int(cy) + reach + 1, size)
    x0, x1 = max(int(cx) - reach, 0), min(int(cx) + reach + 1, size)
    if y1 - y0 < 2 or x1 - x0 < 2:
      continue
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    mask = _shape_mask(kind, yy, xx, cy, cx, radius, rng.uniform(0, 2 * np.pi))
    full_area = int(mask.sum())
    if full_area < 0.5 * np.pi * radius**2:  # mostly outside the frame
      continue
    trial = ids.copy()
    trial[y0:y1, x0:x1][mask] = len(objects) + 1
    visible = np.bincount(trial.ravel(), minlength=len(objects) + 2)[1:]
    full = np.array([o["full_area"] for o in objects] + [full_area])
    if np.any(visible < MIN_VISIBLE_FRACTION * full):
      continue  # would hide too much of an earlier object
    ids = trial
    colour = rng.random(3, dtype=np.float32)
    shade = rng.uniform(-0.15, 0.15, size=2) / max(radius, 1)
    patch = colour + (shade[0] * (yy - cy) + shade[1] * (xx - cx))[..., None]
    image[y0:y1, x0:x1][mask] = patch[mask]
    objects.append(dict(label=kind, full_area=full_area, radius=radius, cy=cy, cx=cx))
  noise = rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(0.02, 0.08)
  image = np.clip(255 * (image + noise) + 0.5, 0, 255).astype(np.uint8)

  labels = np.array([0] + [o["label"] for o in objects], np.uint8)
  semantic = labels[ids]
  bbox, area = [], []
  for k in range(1, len(objects) + 1):
    ys, xs = np.nonzero(ids == k)
    bbox.append([ys.min() / size, xs.min() / size, (ys.max() + 1) / size, (xs.max() + 1) / size])
    area.append(len(ys))
  return dict(
      image=image, semantic=semantic, instance=ids,
      label=labels[1:].astype(np.int64), bbox=np.array(bbox, np.float32).reshape(-1, 4),
      area=np.array(area, np.int64))
