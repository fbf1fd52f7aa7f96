"""Size buckets for eval and the base-size rule, on hand-made sizes with known answers."""
import numpy as np
import pytest

from segjax.data import buckets
from segjax.engine.inference import base_scaled


@pytest.mark.parametrize("size,base,expected", [
    ((512, 683), (2048, 512), (512, 683)),  # ADE20K's typical image: as it is
    ((1600, 1600), (2048, 512), (512, 512)),  # the short side decides
    ((256, 341), (512, 2048), (512, 682)),  # up, too; the pair's order does not matter
    ((100, 3000), (2048, 512), (68, 2048)),  # the long side decides: 3000 * 2048/3000, 100 * 0.6827 + 0.5
    ((480, 640), (1333, 800), (800, 1067)),  # Mask2Former's test size: 640 * 800/480 = 1066.67
    ((480, 640), None, (480, 640)),
])
def test_base_scaled_is_mmcvs_rescale_size(size, base, expected):
  assert base_scaled(size, base) == expected


def test_one_bucket_pads_to_the_largest_and_more_pad_less():
  sizes = [(4, 4)] * 10 + [(8, 8)] + [(4, 8)] * 3
  one, = buckets.plan(sizes, sizes, 1)
  assert one.canvas == (8, 8) and one.indices == tuple(range(14))
  assert buckets.padded_share(sizes, [one]) == pytest.approx(1 - (160 + 64 + 96) / (14 * 64))
  # Two: (4, 8) with (8, 8) pads 3 x 32 pixels, fewer than the 10 x 16 of (4, 4) with (4, 8).
  two = buckets.plan(sizes, sizes, 2)
  assert [b.canvas for b in two] == [(4, 4), (8, 8)] and two[0].indices == tuple(range(10))
  assert buckets.padded_share(sizes, two) == pytest.approx(96 / (10 * 16 + 4 * 64))
  three = buckets.plan(sizes, sizes, 5)  # as many canvases as sizes: nothing padded, no empty bucket
  assert sorted(b.canvas for b in three) == [(4, 4), (4, 8), (8, 8)] and buckets.padded_share(sizes, three) == 0


def test_every_image_in_one_bucket_that_holds_it_and_its_labels():
  rng = np.random.default_rng(0)
  labels = rng.integers(200, 1700, (300, 2))
  sizes = [base_scaled(s, (2048, 512)) for s in labels]
  plan = buckets.plan(sizes, labels, 4)
  assert len(plan) == 4
  seen = np.concatenate([b.indices for b in plan])
  assert sorted(seen) == list(range(300))
  for b in plan:
    assert list(b.indices) == sorted(b.indices)
    assert np.all(np.asarray(sizes)[list(b.indices)] <= b.canvas)
    assert np.all(labels[list(b.indices)] <= b.label_canvas)
  shares = [buckets.padded_share(sizes, buckets.plan(sizes, labels, k)) for k in (1, 2, 4, 8)]
  assert shares == sorted(shares, reverse=True) and shares[-1] < shares[0] / 3
