"""PyTorch peers of `python -m segjax.benchmark`: torchvision's DeepLabV3-R50 and Hugging Face
transformers' Mask2Former-R50 and EoMT, timed the way segjax times itself (a train step with its
loss and optimizer, and inference, on a synthetic batch already on the device, after warm-up), and
printed as JSON lines with segjax.benchmark's fields.

python peers/peer.py --model=deeplabv3_resnet50 --batch=16 --size=512 --dtype=bfloat16 [--compile]

Runs in its own environment (peers/requirements.txt), never segjax's; `peers/compare.py` runs both
sides and prints the ratios.
"""
import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

# segjax's EoMT bench configs (configs/bench/eomt_vit_{s,b,l}_640.py): DINOv2 at patch 16, 4 registers.
_VITS = {"eomt_vit_s": (384, 12, 6, 3), "eomt_vit_b": (768, 12, 12, 3), "eomt_vit_l": (1024, 24, 16, 4)}
MODELS = ("deeplabv3_resnet50", "mask2former_r50", *_VITS)


def build(name, num_classes, size):
  """(model, loss of a batch): each model with its own training loss."""
  if name == "deeplabv3_resnet50":
    import torchvision  # pylint: disable=g-import-not-at-top
    model = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None,
                                                               num_classes=num_classes, aux_loss=False)
    return model, lambda m, batch: torch.nn.functional.cross_entropy(m(batch["image"])["out"], batch["semantic"])
  import transformers  # pylint: disable=g-import-not-at-top
  if name == "mask2former_r50":
    backbone = transformers.ResNetConfig(depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048],
                                         layer_type="bottleneck", out_features=["stage1", "stage2", "stage3", "stage4"])
    config = transformers.Mask2FormerConfig(backbone_config=backbone, num_labels=num_classes, num_queries=100,
                                            decoder_layers=10, use_pretrained_backbone=False)
    model = transformers.Mask2FormerForUniversalSegmentation(config)
  else:
    dim, depth, heads, blocks = _VITS[name]
    config = transformers.EomtConfig(hidden_size=dim, num_hidden_layers=depth, num_attention_heads=heads,
                                     image_size=size, patch_size=16, num_register_tokens=4, num_blocks=blocks,
                                     num_queries=200, num_labels=num_classes)
    model = transformers.EomtForUniversalSegmentation(config)
  return model, lambda m, batch: m(batch["image"], mask_labels=batch["masks"], class_labels=batch["classes"]).loss


def synthetic_batch(batch, size, num_classes, device, segments=8):
  """Images, a semantic map, and each image's `segments` masks (random boxes) and classes."""
  g = torch.Generator().manual_seed(0)
  image = torch.rand(batch, 3, size, size, generator=g)
  semantic = torch.randint(0, num_classes, (batch, size, size), generator=g)
  masks, classes = [], []
  for _ in range(batch):
    corner = (torch.rand(segments, 2, generator=g) * size * 0.6).long()
    extent = (torch.rand(segments, 2, generator=g) * size * 0.3).long() + 4
    m = torch.zeros(segments, size, size)
    for k in range(segments):
      m[k, corner[k, 0]:corner[k, 0] + extent[k, 0], corner[k, 1]:corner[k, 1] + extent[k, 1]] = 1
    masks.append(m.to(device))
    classes.append(torch.randint(0, num_classes, (segments,), generator=g).to(device))
  return {"image": image.to(device), "semantic": semantic.to(device), "masks": masks, "classes": classes}


def _sync(device):
  if device.type == "cuda":
    torch.cuda.synchronize()


def _time(step, device, warmup, steps, rounds):
  """Each round's seconds per step, as segjax.benchmark times them (it reports the fastest round)."""
  for _ in range(warmup):
    step()
  _sync(device)
  times = []
  for _ in range(rounds):
    start = time.perf_counter()
    for _ in range(steps):
      step()
    _sync(device)
    times.append((time.perf_counter() - start) / steps)
  return times


def run(name, batch, size, dtype, device, compile_model=False, num_classes=21, steps=30, warmup=5,
        modes=("train", "infer"), rounds=3):
  """Prints and returns one record per mode."""
  device = torch.device(device)
  model, loss_of = build(name, num_classes, size)
  model = model.to(device)
  data = synthetic_batch(batch, size, num_classes, device)
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4) if name != "deeplabv3_resnet50" else \
      torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)  # as its segjax config
  amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")
  run_model = torch.compile(model) if compile_model else model
  kind = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
  common = {"bench": "transformers" if name != "deeplabv3_resnet50" else "torchvision", "model": name,
            "batch": batch, "size": size, "dtype": dtype, "devices": 1, "device_kind": kind,
            "compile": compile_model, "torch": torch.__version__}
  records = []

  def report(mode, times, flops):
    seconds = min(times)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    record = dict(common, mode=mode, step_ms=round(seconds * 1e3, 2), images_per_s=round(batch / seconds, 1),
                  round_ms=[round(t * 1e3, 2) for t in times],
                  peak_mem_gib=None if peak is None else round(peak, 3), planned_mem_gib=None,
                  flops_per_image=int(flops / batch) if flops else None,
                  achieved_tflops=round(flops / seconds / 1e12, 3) if flops else None)
    records.append(record)
    print(json.dumps(record), flush=True)

  def train_step():
    with amp:
      loss = loss_of(run_model, data)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

  def infer_step():
    with torch.no_grad(), amp:
      run_model(data["image"])

  for mode, step, training in (("train", train_step, True), ("infer", infer_step, False)):
    if mode not in modes:
      continue
    model.train(training)
    with FlopCounterMode(display=False) as counter, amp, torch.set_grad_enabled(training):
      out = loss_of(model, data) if training else model(data["image"])  # eager: what one step computes
      if training:
        out.backward()
    opt.zero_grad(set_to_none=True)
    report(mode, _time(step, device, warmup, steps, rounds), counter.get_total_flops())
  return records


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", choices=MODELS, default="deeplabv3_resnet50")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--size", type=int, default=512)
  p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
  p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
  p.add_argument("--classes", type=int, default=21)
  p.add_argument("--steps", type=int, default=30, help="steps a round")
  p.add_argument("--rounds", type=int, default=3, help="rounds; the fastest is reported")
  p.add_argument("--warmup", type=int, default=5)
  p.add_argument("--modes", default="train,infer")
  p.add_argument("--compile", action="store_true", help="torch.compile the model")
  a = p.parse_args()
  if a.device.startswith("cuda"):
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
  run(a.model, a.batch, a.size, a.dtype, a.device, a.compile, a.classes, a.steps, a.warmup, tuple(a.modes.split(",")),
      a.rounds)


if __name__ == "__main__":
  main()
