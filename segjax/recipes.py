"""What recipes share: a published recipe's model and optimizer pieces, its schedule, and its
`:tiny` variant, which the tests run. Configs import these; the schema and its check are in
segjax/config.py."""
from segjax.config import base_config, set_head


def tiny_variant(c):
  """A recipe's `:tiny` variant (`--config=configs/<dataset>/<recipe>.py:tiny`): the same model a few
  channels wide and one block deep per stage, small crops and three steps, so a test can run every
  recipe on a few fake files on a CPU. The data settings (dataset, splits, scales) stay the
  recipe's own."""
  if c.model.backbone.startswith("resnet"):  # one block per stage: compiles in a third of the time
    c.model.backbone_kwargs.width = 4
    c.model.backbone_kwargs.stage_sizes = (1, 1, 1, 1)
  if c.model.backbone.startswith("vit_"):  # two blocks, 16 wide
    c.model.backbone_kwargs.update(dim=16, depth=2, heads=2, mlp_hidden=32)
  from segjax import heads  # pylint: disable=g-import-not-at-top  (jax and flax: only here)
  heads.get(c).tiny(c)
  c.model.dtype = "float32"
  c.model.init_from.path = None  # a few channels wide: no pretrained weights fit
  height, width = c.input.crop_size or (32, 32)
  c.input.crop_size = (32, 32 * width // height)  # the recipe's aspect ratio
  c.input.eval_size = (64, 64)
  for part in (c.input, c.eval):  # the recipe's base size, its shorter side 32: fake files stay small
    if part.base_size:
      part.base_size = tuple(max(round(n * 32 / min(part.base_size)), 1) for n in part.base_size)
  c.optimizer.warmup_steps = c.optimizer.backbone_warmup_steps = 0
  c.batch_size = c.eval_batch_size = 8
  c.total_steps = c.eval_every = c.checkpoint_every = 3
  c.log_every = 1
  c.num_summary_images = 1
  return c


# torchvision's ResNet50_Weights.IMAGENET1K_V1 (76.13% top-1), converted:
#   wget https://download.pytorch.org/models/resnet50-0676ba61.pth
#   python -m segjax.convert --arch=resnet50 --in=resnet50-0676ba61.pth --out=RESNET50_IMAGENET
RESNET50_IMAGENET = "~/.cache/segjax/resnet50_imagenet1k_v1.safetensors"


def deeplabv3plus_r50(dataset, output_stride, rates, crop_size, scales):
  """What every published-recipe config shares: ResNet-50 from ImageNet weights (RESNET50_IMAGENET)
  + DeepLabV3+ in bfloat16 on `dataset`, trained on crops of images scaled by a factor in `scales`."""
  c = base_config()
  c.dataset.name = dataset
  c.model.backbone = "resnet50"
  c.model.init_from.path = RESNET50_IMAGENET
  c.model.backbone_kwargs.output_stride = output_stride
  c.model.decoder = "deeplabv3plus"
  c.model.decoder_kwargs.rates = rates
  c.model.dtype = "bfloat16"
  c.input.crop_size = crop_size
  c.input.min_scale, c.input.max_scale = scales
  return c


def sgd_poly(c, lr=0.01, weight_decay=5e-4):
  """mmsegmentation's optimizer: SGD with momentum 0.9 and poly (0.9) decay."""
  c.optimizer.name, c.optimizer.lr, c.optimizer.momentum = "sgd", lr, 0.9
  c.optimizer.weight_decay, c.optimizer.schedule = weight_decay, "poly"
  return c


def panoptic_deeplab(c, lr, semantic_top_k, min_stuff_area):
  """Panoptic-DeepLab's head, losses, post-processing and optimizer (Adam without weight decay, poly
  after 1000 warm-up steps), as detectron2's projects/Panoptic-DeepLab sets them."""
  set_head(c, "panoptic_deeplab")
  c.model.instance_decoder_kwargs.hidden = 128
  c.loss.semantic_top_k, c.loss.center_weight, c.loss.offset_weight = semantic_top_k, 200.0, 0.01
  c.loss.center_sigma = 8.0
  c.postprocess.center_threshold, c.postprocess.nms_kernel, c.postprocess.top_k = 0.1, 7, 200
  c.postprocess.min_stuff_area = min_stuff_area
  c.optimizer.name, c.optimizer.lr, c.optimizer.weight_decay = "adamw", lr, 0.0
  c.optimizer.schedule, c.optimizer.warmup_steps = "poly", 1000
  return c


# DINOv2's ViT-L/14 with 4 registers (timm's vit_large_patch14_reg4_dinov2.lvd142m), its patch
# embedding resized to 16 (FlexiViT's pseudo-inverse, as EoMT loads it), converted:
#   python -m segjax.convert --arch=vit_large_patch14_reg4_dinov2 --source=timm --patch=16 \
#       --in=model.safetensors --out=DINOV2_VIT_L16
DINOV2_VIT_L16 = "~/.cache/segjax/dinov2_vitl14_reg4_patch16.safetensors"


def eomt_vit_l(dataset, crop_size, scales, queries, head="eomt", base_size=None):
  """EoMT's ViT-L recipe (Kerssies et al. CVPR 2025; tue-mps/eomt configs/dinov2/*/eomt_large_*.yaml
  and training/ defaults): DINOv2 ViT-L/16 with 4 registers (DINOV2_VIT_L16), queries through its
  last 4 blocks, masks annealed block after block over sixths 1-5 of training (poly 0.9); class,
  mask and dice weights 2, 5, 5, "no object" 0.1, 12544 points (3x oversampled, 75% by
  uncertainty); AdamW lr 1e-4 with weight decay 0.05 on every parameter (as EoMT), layer-wise rate
  decay 0.8, 500 warm-up steps for the new parts and then 1000 for the backbone, poly 0.9; gradient
  norm clipped at 0.01; batch 16 in bfloat16 (EoMT: 16-bit mixed precision).

  Deviations: the position embedding stays on DINOv2's 37 x 37 grid and is resized at every step
  (EoMT resizes it once at load, then trains the resized one); no colour jitter (EoMT's ADE20K and
  Cityscapes recipes have it); eval whole, each image in a size bucket (EoMT slides crop-size windows
  along the long side of a semantic image whose short side it resizes to the crop, and pads a
  panoptic one to the crop). Padding costs a ViT more than a CNN (padded patches are tokens every
  patch attends to), which the buckets keep small. `scales` are of the image fitted into
  `base_size` (EoMT's scale jitter fits it into the crop), or of the image as it comes.
  `head`: "eomt", or "eomt_semantic" for semantic segmentation (segments per class)."""
  c = base_config(head)
  c.dataset.name = dataset
  c.model.backbone = "vit_large_patch14_reg4_dinov2"
  c.model.backbone_kwargs.patch = 16
  c.model.init_from.path = DINOV2_VIT_L16
  c.model.decoder_kwargs.update(num_queries=queries, blocks=4, upscale=2)
  c.model.dtype = "bfloat16"
  c.input.crop_size, c.input.base_size = crop_size, base_size
  c.input.min_scale, c.input.max_scale = scales
  c.optimizer.name, c.optimizer.lr, c.optimizer.weight_decay = "adamw", 1e-4, 0.05
  c.optimizer.schedule, c.optimizer.poly_power = "poly", 0.9
  c.optimizer.layer_decay = 0.8
  c.optimizer.warmup_steps, c.optimizer.backbone_warmup_steps = 500, 1000
  c.optimizer.grad_clip_norm = 0.01
  return c


def eomt_benchmark(size, blocks):
  """EoMT ViT-`size`/16 at 640x640 for `python -m segjax.benchmark`, in COCO panoptic's setting
  (eomt_vit_l's model, 200 queries, its last `blocks` blocks masked), with random weights, batch 16
  and a COCO-sized label set (133 classes, 80 things)."""
  c = eomt_vit_l("synthetic_scenes", crop_size=(640, 640), scales=(1.0, 1.0), queries=200)
  c.model.backbone = f"vit_{size}_patch14_reg4_dinov2"
  c.model.decoder_kwargs.blocks = blocks
  c.model.init_from.path = None  # the benchmark times random weights
  c.dataset.num_classes = 133
  c.dataset.thing_classes = tuple(range(80))
  c.loss.max_segments = 100
  c.batch_size = 16
  c.total_steps = 88_692  # COCO's schedule (configs/coco_panoptic/eomt_vit_l.py), past the warm-ups
  c.benchmark.image_size = 640
  return c


def schedule(c, total_steps, batch_size, eval_batch_size, variant=""):
  """Steps and batch sizes, ten evals and checkpoints per run; the `tiny` variant if asked."""
  c.batch_size, c.eval_batch_size, c.total_steps = batch_size, eval_batch_size, total_steps
  c.log_every = 100
  c.eval_every = c.checkpoint_every = total_steps // 10
  return tiny_variant(c) if variant == "tiny" else c


def mask_former_r50(dataset, crop_size, scales, frozen_bn):
  """Mask2Former's R50 recipe (Cheng et al. 2022; facebookresearch/Mask2Former's
  maskformer2_R50_bs16_*.yaml): ResNet-50 at stride 32 from ImageNet weights (RESNET50_IMAGENET),
  100 queries, 9 decoder layers of width 256 (8 heads, feed-forward 2048), class, mask and dice
  weights 2, 5, 5, "no object" 0.1, 12544 points per mask (oversampled 3x, 75% by uncertainty);
  AdamW lr 1e-4, weight decay 0.05, the backbone's rate x0.1, gradient norm clipped at 0.01;
  batch 16 in bfloat16 (Mask2Former trains with AMP). segjax's pixel decoder is an FPN with
  BatchNorm where Mask2Former's is six layers of multi-scale deformable attention with GroupNorm."""
  c = base_config("mask_former")
  c.dataset.name = dataset
  c.model.backbone = "resnet50"
  c.model.backbone_kwargs.output_stride = 32
  c.model.backbone_kwargs.frozen_bn = frozen_bn
  c.model.init_from.path = RESNET50_IMAGENET
  c.model.decoder_kwargs.update(num_queries=100, hidden=256, mask_dim=256, layers=9, heads=8, ffn=2048)
  c.model.dtype = "bfloat16"
  c.input.crop_size = crop_size
  c.input.min_scale, c.input.max_scale = scales
  c.optimizer.name, c.optimizer.lr, c.optimizer.weight_decay = "adamw", 1e-4, 0.05
  c.optimizer.backbone_lr_multiplier = 0.1
  c.optimizer.grad_clip_norm = 0.01
  return c
