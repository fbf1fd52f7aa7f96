"""Devices and shardings: a (`data`, `fsdp`) mesh over every device of every process. The batch is
split over both axes; the train state (parameters and optimizer state) over `fsdp` (ZeRO-3 / FSDP:
each device holds 1/fsdp of it, gathered by XLA where a step needs it), replicated when fsdp is 1.

A multi-host run is JAX's multi-controller runtime: every process runs the same program, the
coordinator (process 0's address) lets them find each other, and `jax.distributed` must start
before anything touches a device.
"""
import os

import jax
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from segjax.errors import UserError


# Set by launch/local.py (and usable by any launcher that knows the three numbers itself).
ENV_COORDINATOR = "SEGJAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "SEGJAX_NUM_PROCESSES"
ENV_PROCESS_ID = "SEGJAX_PROCESS_ID"
# Set to 1 where the cluster describes itself (TPU VM pods, SLURM, Open MPI): JAX reads it.
ENV_DISTRIBUTED = "SEGJAX_DISTRIBUTED"


def initialize(coordinator_address=None, num_processes=None, process_id=None, auto=None):
  """Starts jax.distributed when the launch asks for it; a single-process run starts nothing.

  Arguments left as None are read from the SEGJAX_* environment variables. With a coordinator
  address, all three numbers must be known; with `auto`, JAX detects them from the cluster.
  Returns True when the runtime was started.
  """
  env = os.environ
  coordinator_address = coordinator_address or env.get(ENV_COORDINATOR) or None
  num_processes = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
  process_id = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
  auto = auto if auto is not None else env.get(ENV_DISTRIBUTED, "0").lower() in ("1", "true", "yes")
  if coordinator_address:
    if num_processes is None or process_id is None:
      raise UserError(f"A coordinator address ({coordinator_address}) needs the number of processes "
                      "and this process's id too: pass --num_processes and --process_id or set "
                      f"{ENV_NUM_PROCESSES} and {ENV_PROCESS_ID}.")
    if not 0 <= process_id < num_processes:
      raise UserError(f"Process id {process_id} is outside 0..{num_processes - 1}; each of the "
                      f"{num_processes} processes needs its own id.")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    return True
  if num_processes is not None and num_processes > 1:
    raise UserError(f"{num_processes} processes need a coordinator: pass --coordinator_address=HOST:PORT "
                    f"(process 0's host) or set {ENV_COORDINATOR}, or use --distributed on a cluster "
                    "that JAX detects (TPU VM, SLURM).")
  if auto:
    jax.distributed.initialize()
    return True
  return False


def _env_int(name):
  value = os.environ.get(name)
  if value in (None, ""):
    return None
  try:
    return int(value)
  except ValueError:
    raise UserError(f"{name}={value!r} is not an integer.") from None


def on_process_0(predicate):
  """`predicate()` as process 0 finds it, told to every process: for files only process 0 writes."""
  value = bool(predicate()) if jax.process_index() == 0 else False
  if jax.process_count() == 1:
    return value
  return bool(multihost_utils.broadcast_one_to_all(np.int32(value)))


def make_mesh(devices=None, fsdp=1):
  """A (data, fsdp) mesh over `devices` (default: all devices of all processes), `fsdp` devices
  sharing each copy of the train state (config.mesh.fsdp)."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  if fsdp < 1 or devices.size % fsdp:
    raise UserError(f"config.mesh.fsdp is {fsdp}, which does not divide the {devices.size} devices; give a "
                    f"divisor of {devices.size} (1: every device holds the whole state).")
  return Mesh(devices.reshape(-1, fsdp), ("data", "fsdp"))


def replicated(mesh):
  return NamedSharding(mesh, P())


def batch_sharding(mesh):
  """Leading (batch) axis split over every device (both axes), all other axes whole."""
  return NamedSharding(mesh, P(mesh.axis_names))


def state_sharding(tree, mesh):
  """A sharding for each array of `tree` (shapes suffice): split over `fsdp` along its largest axis
  that fsdp divides, replicated if none does (scalars, odd sizes) or fsdp is 1. A rule of shapes,
  so parameters and the optimizer's moments of them are split alike."""
  n = mesh.shape["fsdp"]

  def rule(x):
    for axis in sorted(range(len(x.shape)), key=lambda a: -x.shape[a]):
      if n > 1 and x.shape[axis] % n == 0:
        return NamedSharding(mesh, P(*[None] * axis, "fsdp"))
    return NamedSharding(mesh, P())

  return jax.tree.map(rule, tree)


def check_batch_size(global_batch, mesh, what="config.batch_size"):
  n = mesh.devices.size
  if global_batch % n:
    raise UserError(f"{what}={global_batch} is not divisible by the {n} devices; "
                     f"set it to a multiple of {n}.")
  if global_batch % jax.process_count():
    raise UserError(f"{what}={global_batch} is not divisible by the {jax.process_count()} processes.")


def host_batch_size(global_batch):
  return global_batch // jax.process_count()


def to_global(host_batch, mesh):
  """Turns this process's slice of the batch (a dict of NumPy arrays) into global jax.Arrays."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), host_batch)


def gather(tree):
  """Every process's rows of a batch-sharded tree of global arrays, as whole NumPy arrays on every
  host: what eval metrics need, since each host only holds its own slice of the eval data."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def sync(name):
  """Waits until every process reaches the barrier `name`."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def on_process_zero(fn, what):
  """Runs `fn` on process 0 while the others wait; if it fails there, every process raises, rather
  than the others waiting forever at their next collective."""
  error = None
  if jax.process_index() == 0:
    try:
      fn()
    except Exception as e:  # pylint: disable=broad-except  (re-raised below, after telling the others)
      error = e
  if jax.process_count() > 1 and multihost_utils.broadcast_one_to_all(np.array(error is not None)):
    if error is None:
      raise UserError(f"Process 0 could not {what}; its log says why.")
  if error is not None:
    raise error


def from_every_process(value):
  """(processes, ...) NumPy array of `value` (a small NumPy array) as each process holds it."""
  value = np.asarray(value)
  if jax.process_count() == 1:
    return value[None]
  return np.asarray(multihost_utils.process_allgather(value, tiled=False))
