"""Panoptic segmentation on the built-in scenes with EoMT (segjax/heads/eomt.py): a small hybrid ViT
from scratch whose last 2 blocks carry 16 queries, scored with mIoU, COCO mask AP and PQ like
configs/query_panoptic.py, at one scale without flip.

python -m segjax.main --config=configs/eomt_panoptic.py --workdir=/tmp/eomt_panoptic

The ViT: a convolutional stem to stride 8 (widths 16, 32, 64, with one residual unit at strides 4
and 8: the hybrid of Dosovitskiy et al.'s section 3.1), a 2x2 patch embedding to stride
16, 4 blocks 96 wide, a learned position embedding on the scenes' 16 x 16 grid; masks at stride 8
(one upscale block). On 256x256 scenes with whole-image batches of 8.

Why the stem: the class of an object is its shape, and a plain ViT from scratch learned it too late
for a 30-minute run. Measured on the 2-core machine (each run from scratch, the dataset already
built; semantic_ce is the auxiliary loss on each crop's hardest 20% of pixels, near 1.1 at chance):
- patch 16, no stem, 6 blocks: 1.8 steps/s; at step 1500 mIoU 0.376, PQ 0.285, mask AP 0.013, the
  queries' class cross-entropy at chance through step 1550; the same without the auxiliary loss, and
  lr 3e-4 instead of 1e-3, learned no faster;
- a stem of three plain stride-2 convolutions (no residual units), 6 blocks: semantic_ce still
  0.9-1.1 at step 1200; stopped;
- this file's stem with 6 blocks: 1.35 steps/s, too slow for 30 minutes;
- the same at 2600 steps, with an eval at step 1300 too: 1.7 steps/s; semantic_ce falls from 1.0
  to 0.45 between steps 700 and 1000; at step 1300 mIoU 0.820, PQ 0.597, mask AP 0.257; at step 2600
  mIoU 0.896, PQ 0.717 (things 0.627), mask AP 0.448 (AP50 0.713, AP75 0.487), in 27 minutes.
  Thresholds 0.3 instead of 0.5 changed no figure by more than 0.02 (--eval_only);
- the same with 1024 points per mask: mIoU 0.879, PQ 0.736, mask AP 0.444 (AP50 0.740, AP75
  0.475) in 31 minutes (1.45-1.5 steps/s that day);
- masks at stride 4 (two upscale blocks): 0.78 s a step against 0.46 (segjax.benchmark);
- this file (3000 steps; the upscale's depthwise convolution as shifted sums, segjax/models/
  layers.py, took a step from 0.53 to 0.46 s): 1.9 steps/s, semantic_ce below 0.5 by step 1000; at
  step 3000 mIoU 0.900, PQ 0.766 (things 0.692), mask AP 0.524 (AP50 0.790, AP75 0.577), 27 minutes
  from the command to the eval's line; again after attention scaled q instead of its scores (float
  rounding apart, the same model), on a slower day (1.5-1.8 steps/s): mIoU 0.904, PQ 0.753 (things
  0.675), mask AP 0.494 (AP50 0.771, AP75 0.536) in 30.4 minutes, and the same figures to the
  fourth digit in 28.3 minutes once XLA's freed CPU buffers were kept (segjax/engine/host_memory.py;
  1.8-1.9 steps/s): on one machine the run repeats exactly;
- the same training, instances scored as Mask2Former scores them (the mask's mean probability over
  the whole mask, not inside the segment; segjax/heads/mask_former.py), from a clean checkout:
  mIoU 0.904, PQ 0.753 (things 0.675), mask AP 0.505 (AP50 0.777, AP75 0.556) in 28.5 minutes;
- fewer residual units in the stem, 3000 steps: (0, 1, 0) and (0, 0, 1) left semantic_ce near 1.0
  through step 1250 (the model above: 0.45); stopped;
- a narrower stem, widths (16, 24, 48), whose inference is 0.45x query_panoptic's: 2.0 steps/s; at
  step 3000 mIoU 0.884, PQ 0.740 (things 0.658), mask AP 0.474 (AP50 0.746, AP75 0.516): AP short;
- two units at stride 8 (0, 1, 2), attention dividing by the softmax's sum after summing the values
  (segjax/models/layers.py: a train step 530-554 -> 483-509 ms), so 3200 steps fit the same time;
  from a clean checkout, 1.9-2.0 steps/s: at step 3200 mIoU 0.908, PQ 0.764 (things 0.690, stuff
  0.988), mask AP 0.533 (AP50 0.795, AP75 0.591) in 28.2 minutes (the dataset built before; building
  it takes 22 s);
- one malloc arena for XLA's threads (segjax/engine/host_memory.py) took the train step from
  457-496 to 360-387 ms (segjax.benchmark): 2.2-2.7 steps/s;
- one residual unit at stride 8 instead of two, stem_blocks (0, 1, 1): 0.91 GFLOP an image against
  1.05, its inference 0.44-0.45x query_panoptic's where the two units' was 0.49-0.50x that day;
  it learns the shapes later (semantic_ce 0.74 at step 1000, 0.3-0.55 by step 1700), so more steps:
  3800 from a clean checkout: mIoU 0.889, PQ 0.769 (things 0.696), mask AP 0.527 (AP50 0.797, AP75
  0.583) in 25.9 minutes;
- this file, 4000 steps, from a clean checkout: at step 4000 mIoU 0.902, PQ 0.774 (things 0.703,
  stuff 0.987), mask AP 0.556 (AP50 0.813, AP75 0.621) in 27.2 minutes, max RSS 4.9 GiB.
Issue 28 asks PQ >= 0.70, mask AP >= 0.50, mIoU >= 0.88 in at most 30 minutes: met by that run.

Inference at 256x256, one scale without flip, batch 8, random weights, on the 2-core machine, timed
in turn with configs/query_panoptic.py's model (1.82 GFLOP an image) by
`python -m segjax.benchmark --config=configs/eomt_panoptic.py --against=configs/query_panoptic.py`
(both with num_classes 4, thing_classes (1, 2, 3), image_size 256, scales (1.0,), no flip, batch 8,
modes ('infer',), 5 rounds of 10 batches): 77.3-78.5 against 174.3-175.6 ms a batch, 0.442-0.447x
over three runs; as two processes back to back, 0.437-0.453x over four pairs and 0.53x in a fifth,
whose EoMT ran at 94-117 ms throughout (query_panoptic's model's fastest round is 174-178 ms in
every process; the cause is not found: not page faults, which the one malloc arena ended). The
stem's residual units, which the shapes need, cost as much as the ViT, and the upsampling and
post-processing at the image's size are the same for both.
(Its own protocol, flip at scales 1 and 1.25, takes 130 ms.)
"""
from segjax.config import base_config


def get_config():
  c = base_config("eomt")
  # Patch 16 on whole 256x256 scenes, the 16 x 16 grid it infers on (a ViT from scratch meets a
  # resized position embedding badly); one upscale block, to stride 8.
  c.model.backbone = "vit_tiny_patch16"
  c.model.backbone_kwargs.update(grid=(16, 16), stem=(16, 32, 64), stem_blocks=(0, 1, 1), depth=4, dim=96,
                                 heads=3, mlp_hidden=384, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
  c.model.decoder_kwargs.update(num_queries=16, blocks=2, upscale=1)
  # Dense class supervision for a model from scratch: a per-pixel auxiliary loss (MaX-DeepLab's, as
  # configs/query_panoptic.py's) on each crop's hardest 20% of stride-8 pixels, weighted 10.
  c.model.decoder_kwargs.aux_semantic = True
  c.loss.semantic_top_k = 0.2
  c.loss.semantic_weight = 10.0
  c.loss.num_points = 256
  c.loss.max_segments = 10
  c.input.crop_size = (256, 256)
  c.optimizer.lr = 1e-3
  c.optimizer.weight_decay = 0.05
  c.optimizer.grad_clip_norm = 1.0
  c.optimizer.warmup_steps = 100
  c.batch_size = 8
  c.total_steps = 4000
  c.log_every = 50
  c.eval_every = 4000  # one eval, at the end: a minute of the 30 more for training
  c.checkpoint_every = 2000
  c.postprocess.object_mask_threshold = 0.5
  c.postprocess.overlap_threshold = 0.5
  return c
