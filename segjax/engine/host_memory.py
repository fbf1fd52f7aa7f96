"""Keeps the memory XLA's CPU backend frees for its next call, instead of handing it back to the
system and faulting it in again.

XLA's CPU backend takes every call's buffers from malloc. glibc serves a block of 32 MiB or more
(the cap of its adaptive threshold) with a fresh mmap and unmaps it when freed, so each call pays a
page fault for every 4 KiB of its large buffers: on the 2-core machine, writing a batch's upsampled
mask logits (8 x 256 x 256 x 16 floats, 32 MiB) took 1.3 ms an image, 0.17 with the pages kept.
Raising glibc's mmap and trim thresholds (what MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_
do for a process started with them) keeps freed blocks in the heap: EoMT's inference on the built-in
scenes went from 118 to 93 ms a batch and its train step from 553 to 503 ms. The price is that the
process keeps the memory of its peak instead of returning it between calls, as tcmalloc and
jemalloc, which PyTorch and TensorFlow recommend on CPUs, also do.

Those thresholds hold for the main heap only. A thread's first malloc gives it an arena of its own,
made of 64 MiB heaps: a block larger than that is mapped and unmapped on every call whatever the
threshold, and a whole heap is unmapped once it is empty. Which of XLA's threads frees which buffer
varies from process to process, so the same program ran at two speeds: in about one process in
three, post-processing a batch of masks page-faulted 400,000-500,000 times in 160 calls and took
2.8-3.7 ms an image instead of 2.0. One arena (MALLOC_ARENA_MAX=1) puts every thread's blocks in
the main heap: ten processes out of ten ran at 2.0, a 128 MiB output stopped faulting 32,769 times a
call, and EoMT's train step on the built-in scenes went from 457-496 to 360-387 ms. The threads now
share the arena's lock, which costs programs of many small operations a little: EoMT's inference
(configs/eomt_panoptic.py with stem_blocks (0, 1, 2)), 85-86 -> 87-90 ms a batch (the best of 10
rounds, three processes each).
"""
import ctypes
import importlib.metadata
import importlib.util
import os
import pkgutil
import platform as platform_lib

import jax

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_KEPT = 2**31 - 1  # mallopt's value is a C int: blocks up to 2 GiB come from the heap and stay there
_THEIRS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def reuse_freed_memory(platform=None):
  """On the CPU backend under glibc, keeps freed blocks for reuse; True if it did. Call it before
  any thread but the main one allocates, so before JAX starts its backend (jax.devices(), a first
  array) or TensorFlow its threads: a thread keeps the arena it took, and glibc hands arenas made
  before the limit to later threads too. `platform`: the backend's, when a test knows it; by
  default judged from JAX_PLATFORMS and the accelerator plugins installed. A user's own malloc
  settings in the environment are left as they are."""
  cpu = _cpu_only() if platform is None else platform == "cpu"
  if not cpu or platform_lib.libc_ver()[0] != "glibc":
    return False
  if any(name in os.environ for name in _THEIRS) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
    return False
  libc = ctypes.CDLL(None)
  one_arena = "MALLOC_ARENA_MAX" in os.environ or libc.mallopt(_M_ARENA_MAX, 1)
  return bool(one_arena and libc.mallopt(_M_MMAP_THRESHOLD, _KEPT) and libc.mallopt(_M_TRIM_THRESHOLD, _KEPT))


def _cpu_only():
  """Whether JAX will run on the CPU, judged without starting a backend."""
  if jax.config.jax_platforms:
    return all(p.strip() == "cpu" for p in jax.config.jax_platforms.split(","))
  if any(os.environ.get(name) for name in ("TPU_LIBRARY_PATH", "PJRT_NAMES_AND_LIBRARY_PATHS")):
    return False
  if importlib.util.find_spec("libtpu") is not None or importlib.metadata.entry_points(group="jax_plugins"):
    return False
  try:
    import jax_plugins  # pylint: disable=g-import-not-at-top  (the namespace accelerator plugins install into)
  except ImportError:
    return True
  return not any(pkgutil.iter_modules(jax_plugins.__path__))
