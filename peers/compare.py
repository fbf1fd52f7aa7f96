"""segjax.benchmark and its PyTorch peer (peers/peer.py) on one device, the same model, batch, size
and dtype, one after the other: every JSON line, then one `ratio` line per mode (segjax's images/s
over the peer's; above 1, segjax is faster).

python peers/compare.py --model=deeplabv3_resnet50 --batch=16 --size=512 --dtype=bfloat16 \\
    --compile --peer_python=peers-env/bin/python

segjax runs in this Python; the peer in --peer_python (default: SEGJAX_PEER_PYTHON, else this one),
whose environment has peers/requirements.txt. The pairs are segjax's bench configs:
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# peer model -> (segjax bench config, its number of classes)
PAIRS = {
    "deeplabv3_resnet50": ("configs/bench/deeplabv3_r50_os8.py", 21),
    # transformers' Mask2Former has its multi-scale deformable-attention pixel decoder (in plain
    # PyTorch: no CUDA kernel), segjax's an FPN: the same queries and decoder, not the same model.
    "mask2former_r50": ("configs/bench/mask_former_r50_512.py", 19),
    "eomt_vit_s": ("configs/bench/eomt_vit_s_640.py", 133),
    "eomt_vit_b": ("configs/bench/eomt_vit_b_640.py", 133),
    "eomt_vit_l": ("configs/bench/eomt_vit_l_640.py", 133),
}
__doc__ += "".join(f"\n  {peer}: {config}" for peer, (config, _) in PAIRS.items()) + "\n"


def _lines(args, env=None):
  """The JSON lines a command prints; its whole output if it fails."""
  done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
  if done.returncode:
    sys.exit(f"{' '.join(args[:4])} ... failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
  return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def compare(model, batch, size, dtype, peer_python, compile_peer=False, steps=30, warmup=5,
            modes=("train", "infer"), rounds=3):
  config, classes = PAIRS[model]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
  ours = _lines([sys.executable, "-m", "segjax.benchmark", f"--config={config}", f"--config.batch_size={batch}",
                 f"--config.benchmark.image_size={size}", f"--config.model.dtype={dtype}",
                 f"--config.benchmark.steps={steps}", f"--config.benchmark.warmup_steps={warmup}",
                 f"--config.benchmark.rounds={rounds}",
                 f"--config.benchmark.modes={tuple(modes)!r}"], env)
  peer = [sys.executable if peer_python is None else peer_python, os.path.join(ROOT, "peers", "peer.py"),
          f"--model={model}", f"--batch={batch}", f"--size={size}", f"--dtype={dtype}", f"--classes={classes}",
          f"--steps={steps}", f"--warmup={warmup}", f"--rounds={rounds}", f"--modes={','.join(modes)}"]
  theirs = _lines(peer) + (_lines(peer + ["--compile"]) if compile_peer else [])
  records = ours + theirs
  for record in records:
    print(json.dumps(record), flush=True)
  for mode in modes:
    mine = [r for r in ours if r["mode"] == mode]
    for other in (r for r in theirs if r["mode"] == mode):
      ratio = {"ratio": round(mine[0]["images_per_s"] / other["images_per_s"], 3), "mode": mode, "model": model,
               "segjax_images_per_s": mine[0]["images_per_s"], "peer_images_per_s": other["images_per_s"],
               "peer": other["bench"] + (" torch.compile" if other["compile"] else " eager")}
      records.append(ratio)
      print(json.dumps(ratio), flush=True)
  return records


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", choices=sorted(PAIRS), default="deeplabv3_resnet50")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--size", type=int, default=512)
  p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
  p.add_argument("--steps", type=int, default=30, help="steps a round; each side reports its fastest round")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--warmup", type=int, default=5)
  p.add_argument("--modes", default="train,infer")
  p.add_argument("--compile", action="store_true", help="also time the peer under torch.compile")
  p.add_argument("--peer_python", default=os.environ.get("SEGJAX_PEER_PYTHON"))
  a = p.parse_args()
  compare(a.model, a.batch, a.size, a.dtype, a.peer_python, a.compile, a.steps, a.warmup, tuple(a.modes.split(",")),
          a.rounds)


if __name__ == "__main__":
  main()
