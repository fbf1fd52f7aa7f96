"""host_memory keeps XLA's freed CPU buffers for the next call: measured as page faults, which
do not depend on the machine's speed."""
import os
import subprocess
import sys

import pytest

from segjax.engine import host_memory

_FAULTS_PER_CALL = """
import resource, sys
import jax, jax.numpy as jnp
from segjax.engine import host_memory
reused = host_memory.reuse_freed_memory(jax.default_backend()) if sys.argv[1] == "on" else False
double = jax.jit(lambda x: x * 2)
x = jnp.ones((8, 256, 256, 16))  # 32 MiB: a batch of upsampled mask logits
faults = []
for _ in range(60):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  jax.block_until_ready(double(x))
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(reused, *faults)
"""


def _faults_per_call(setting):
  env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
  out = subprocess.run([sys.executable, "-c", _FAULTS_PER_CALL, setting], env=env, capture_output=True,
                       text=True, check=True, timeout=300).stdout.split()
  return out[0] == "True", [int(n) for n in out[1:]]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings: Linux only")
def test_a_jitted_call_stops_faulting_its_32_mib_output_in_again():
  _, faults = _faults_per_call("off")
  reused, kept = _faults_per_call("on")
  print("minor page faults in each of 60 calls, without:", faults, "with:", kept)
  assert reused
  assert min(faults) >= 8192  # 32 MiB is 8192 pages of 4 KiB, faulted in on every call
  # Once the heap of each thread that runs a call holds a freed block, it is reused: after a few
  # calls on an idle machine, after some ten when the cores are busy (a test beside it).
  assert sum(n < 100 for n in kept[30:]) >= 20


def test_it_leaves_other_backends_and_a_users_own_malloc_settings_alone(monkeypatch):
  assert not host_memory.reuse_freed_memory("gpu")
  monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
  assert not host_memory.reuse_freed_memory("cpu")
  monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")
  assert not host_memory.reuse_freed_memory("cpu")
