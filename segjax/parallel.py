"""Devices and shardings: one `data` mesh axis over every device of every process."""
import jax
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from segjax.errors import UserError


def make_mesh(devices=None):
  """A 1-D mesh named `data` over `devices` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), ("data",))


def replicated(mesh):
  return NamedSharding(mesh, P())


def batch_sharding(mesh):
  """Leading (batch) axis split over `data`, all other axes whole."""
  return NamedSharding(mesh, P("data"))


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


def to_host_local(x, mesh):
  """This process's slice of a batch-sharded global array, as NumPy."""
  local = multihost_utils.global_array_to_host_local_array(x, mesh, P("data"))
  return np.asarray(local)
