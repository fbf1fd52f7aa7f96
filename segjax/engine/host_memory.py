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
"""
import ctypes
import os
import platform as platform_lib

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEPT = 2**31 - 1  # mallopt's value is a C int: blocks up to 2 GiB come from the heap and stay there
_THEIRS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def reuse_freed_memory(platform):
  """On the CPU backend (`platform`, jax.default_backend()) under glibc, keeps freed blocks for
  reuse; True if it did. A user's own malloc settings in the environment are left as they are."""
  if platform != "cpu" or platform_lib.libc_ver()[0] != "glibc":
    return False
  if any(name in os.environ for name in _THEIRS) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
    return False
  libc = ctypes.CDLL(None)
  return bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEPT) and libc.mallopt(_M_TRIM_THRESHOLD, _KEPT))
