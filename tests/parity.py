"""What the backbone parity tests and the script that made their fixture share: PyTorch-format
weights made from a seed with NumPy alone, the inputs, which outputs are compared and how, and the
PyTorch models they are compared with (imported only when asked for)."""
import zlib

import numpy as np

SEED = 20261201
SIZES = ((224, 224), (225, 225), (256, 512))  # even, odd, a 2:1 rectangle
MODELS = (("torchvision", "resnet50"), ("torchvision", "resnet101"), ("torchvision", "convnext_tiny"),
          ("torchvision", "convnext_base"), ("timm", "convnext_tiny"))
DILATED = (8, 16)  # resnet50 output strides, against torchvision's replace_stride_with_dilation
DILATED_SIZE = (225, 225)
SMALL = ("torchvision", "resnet18")  # at DILATED_SIZE: quick to train from in tests/weights/test_init_from.py
SAMPLES = 2048  # values kept of each stage output; pooled features and logits are kept whole
FIXTURE = "backbone_parity.npz"
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


def outputs(arch):
  stages = ["stage1", "stage2", "stage3", "stage4", "pooled", "logits"]
  return (["stem"] if arch.startswith("resnet") else []) + stages


def state_dict(keys_shapes, seed=SEED):
  """{key: array} for PyTorch's (key, shape) list: each tensor drawn from its own seed, scaled as
  trained weights roughly are (Kaiming-sized kernels, norm scales near 1, positive variances,
  layer scales well above ConvNeXt's 1e-6 initial value, so every block counts)."""
  # Each residual branch's last BatchNorm scales it down, as in a trained ResNet: uncalibrated
  # statistics would otherwise let every block double the activations' variance.
  last_bn = ".bn3." if any(".bn3." in k for k, _ in keys_shapes) else ".bn2."
  out = {}
  for key, shape in keys_shapes:
    shape = tuple(shape)
    if key.endswith("num_batches_tracked"):
      out[key] = np.zeros(shape, np.int64)
      continue
    u = np.random.default_rng([seed, zlib.crc32(key.encode())]).random(shape, dtype=np.float32)
    if key.endswith("running_var"):
      out[key] = 0.5 + u
    elif key.endswith("running_mean") or key.endswith("bias"):
      out[key] = 0.4 * (u - 0.5)
    elif last_bn in key and key.endswith("weight"):
      out[key] = 0.1 + 0.3 * u
    elif key.endswith(("gamma", "layer_scale")):
      out[key] = 0.2 + 0.6 * u
    elif len(shape) == 1:  # norm weights
      out[key] = 0.5 + u
    else:  # conv and linear weights: uniform with Kaiming's variance 2 / fan_in
      out[key] = (u - 0.5) * 2 * np.sqrt(3 * 2 / np.prod(shape[1:]))
  return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in out.items()}


def checksum(state):
  return float(sum(np.float64(v.astype(np.float64).sum()) for v in state.values()))


def image(size, seed=SEED):
  """One (1, H, W, 3) image in [0, 1], segjax's input."""
  return np.random.default_rng([seed, *size]).random((1, *size, 3), dtype=np.float32)


def sample(x):
  """SAMPLES values spread over an output (NHWC, flattened), the same positions on both sides."""
  flat = np.asarray(x).reshape(-1)
  if flat.size <= SAMPLES or x.ndim == 2:
    return flat
  return flat[(np.arange(SAMPLES, dtype=np.int64) * 2654435761) % flat.size]


def relative_error(ours, ref):
  """Largest absolute difference over the reference's scale (its root mean square)."""
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  return float(np.abs(ours - ref).max() / np.sqrt(np.mean(ref**2)))


def torch_model(source, arch, output_stride=32):
  """The PyTorch model, unweighted (needs torch and torchvision, or timm)."""
  if source == "timm":
    import timm  # pylint: disable=g-import-not-at-top
    return timm.create_model(arch, pretrained=False)
  import torchvision  # pylint: disable=g-import-not-at-top
  if arch.startswith("resnet"):
    dilate = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}[output_stride]
    return getattr(torchvision.models, arch)(weights=None, replace_stride_with_dilation=dilate)
  return getattr(torchvision.models, arch)(weights=None)


def torch_outputs(model, source, arch, images):
  """{output: NumPy array, NHWC} of a PyTorch model in eval mode on segjax-style `images`."""
  import torch  # pylint: disable=g-import-not-at-top
  model.eval()
  x = torch.from_numpy(((images - _MEAN) / _STD).transpose(0, 3, 1, 2).copy())
  out = {}
  with torch.no_grad():
    if arch.startswith("resnet"):
      act = model.act1 if source == "timm" else model.relu
      out["stem"] = x = act(model.bn1(model.conv1(x)))
      x = model.maxpool(x)
      for i in range(1, 5):
        out[f"stage{i}"] = x = getattr(model, f"layer{i}")(x)
      out["pooled"] = torch.flatten(x.mean((2, 3)), 1)
      out["logits"] = model.fc(out["pooled"])
    elif source == "timm":
      x = model.stem(x)
      for i in range(4):
        out[f"stage{i + 1}"] = x = model.stages[i](x)
      out["pooled"] = model.forward_head(x, pre_logits=True)
      out["logits"] = model.forward_head(x)
    else:
      f = model.features
      x = f[0](x)
      for i in range(4):
        x = f[2 * i](x) if i else x
        out[f"stage{i + 1}"] = x = f[2 * i + 1](x)
      out["pooled"] = torch.flatten(model.classifier[0](model.avgpool(x)), 1)
      out["logits"] = model.classifier[2](out["pooled"])
  return {k: (v.permute(0, 2, 3, 1) if v.ndim == 4 else v).numpy() for k, v in out.items()}


def segjax_outputs(variables, arch, images, output_stride=32):
  """The same outputs of segjax's model with converted `variables`."""
  import jax  # pylint: disable=g-import-not-at-top
  from segjax.models import imagenet_classifier  # pylint: disable=g-import-not-at-top
  model = imagenet_classifier(arch, variables["params"]["classifier"]["fc"]["kernel"].shape[1], output_stride)
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
  return {k: np.asarray(out[k]) for k in outputs(arch)}
