"""host_memory keeps XLA's freed CPU buffers for the next call: measured as page faults, which
do not depend on the machine's speed."""
import os
import subprocess
import sys

import jax
import pytest

from segjax.engine import host_memory

_FAULTS_PER_CALL = """
import resource, sys
import jax, jax.numpy as jnp
from segjax.engine import host_memory
reused = host_memory.reuse_freed_memory() if sys.argv[1] == "on" else False
double = jax.jit(lambda x: x * 2)
x = jnp.ones((32, 256, 256, 16))  # 128 MiB: more than a thread's own 64 MiB heaps can hold
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
def test_a_jitted_call_stops_faulting_its_128_mib_output_in_again():
  _, faults = _faults_per_call("off")
  reused, kept = _faults_per_call("on")
  print("minor page faults in each of 60 calls, without:", faults, "with:", kept)
  assert reused
  assert min(faults) >= 32768  # 128 MiB is 32768 pages of 4 KiB, faulted in on every call
  # Once the main heap holds a freed block of the size, it is reused: after a few calls (the
  # thresholds alone left it to whichever thread's arena, which maps and unmaps 128 MiB each call).
  assert max(kept[30:]) < 100


def test_it_leaves_other_backends_and_a_users_own_malloc_settings_alone(monkeypatch):
  assert not host_memory.reuse_freed_memory("gpu")
  platforms = jax.config.jax_platforms
  try:
    jax.config.update("jax_platforms", "cuda,cpu")  # what JAX_PLATFORMS=cuda,cpu says
    assert not host_memory.reuse_freed_memory()
  finally:
    jax.config.update("jax_platforms", platforms)


def test_without_jax_platforms_an_installed_accelerator_plugin_means_not_the_cpu(monkeypatch):
  platforms = jax.config.jax_platforms
  try:
    jax.config.update("jax_platforms", None)
    for name in ("TPU_LIBRARY_PATH", "PJRT_NAMES_AND_LIBRARY_PATHS"):
      monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(host_memory.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(host_memory.pkgutil, "iter_modules", lambda path: iter(()))
    plugins = []
    monkeypatch.setattr(host_memory.importlib.metadata, "entry_points",
                        lambda group: plugins if group == "jax_plugins" else [])
    assert host_memory._cpu_only()  # nothing installed but jax
    plugins.append("jax_cuda12_plugin")  # as jax[cuda12] advertises its plugin
    assert not host_memory._cpu_only()
    plugins.clear()
    monkeypatch.setenv("TPU_LIBRARY_PATH", "/opt/libtpu.so")
    assert not host_memory._cpu_only()
  finally:
    jax.config.update("jax_platforms", platforms)
  monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
  assert not host_memory.reuse_freed_memory("cpu")
  monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")
  assert not host_memory.reuse_freed_memory("cpu")
