"""Every device of every process: the seed mesh, placement, gathers, and several hosts (jax.sharding,
jax.distributed).

The mesh (`config.mesh`): one axis, `seeds`, over `config.mesh.seeds` devices (0 = all devices of all
processes). Seeds are the unit of work, so the axis length must divide the seed count: when it does not, the
largest divisor of the seed count that fits is used, and the log and run_info.json say so. One device is the
exact special case of today (nothing is sharded). Training state and per-seed data live sharded over the axis
(`put`), data shared by all seeds replicated; model RDMs and Spearman grids are computed per device on its own
seeds (`jax.shard_map`); bootstrap resamples are split over all devices (`resample_mesh`).

Several hosts: `initialize` calls `jax.distributed.initialize` (coordinator address, process count and id
from flags, or detected by JAX from the cluster environment); every process then reads its inputs, arrays are
placed from each process's copy (`put`), results are gathered to every process (`gather`), and only process 0
writes files (`is_writer`); `barrier` orders a write on process 0 before a read elsewhere. A shared
filesystem is assumed for the workdir.
"""

import dataclasses
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from brainalign.errors import ConfigError

SEEDS = "seeds"


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  heartbeat_timeout_seconds: int = 100,
) -> None:
  """jax.distributed.initialize with the given values (None: JAX detects them from the cluster environment).

  On CPU the cross-process collectives use gloo. heartbeat_timeout_seconds: how soon the other processes stop
  when one dies (JAX's default, 100 s)."""
  if jax.config.jax_platforms in (None, "", "cpu") or str(jax.config.jax_platforms).startswith("cpu"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=coordinator_address,
    num_processes=num_processes,
    process_id=process_id,
    heartbeat_timeout_seconds=heartbeat_timeout_seconds,
  )
  logging.info(
    "jax.distributed: process %d of %d, %d local / %d global devices",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


@dataclasses.dataclass(frozen=True)
class SeedMesh:
  """The seed mesh and what run_info.json records about it."""

  mesh: Mesh
  info: dict

  @property
  def size(self) -> int:
    return int(self.mesh.devices.size)

  @property
  def seeds(self) -> NamedSharding:
    """Leading axis split over the seed axis."""
    return NamedSharding(self.mesh, P(SEEDS))

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())


def largest_divisor(n: int, limit: int) -> int:
  """The largest d <= limit that divides n (n, limit >= 1)."""
  return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def seed_mesh(n_seeds: int, requested: int = 0) -> SeedMesh:
  """The `seeds` mesh for n_seeds seeds over `requested` devices (0 = all; see the module docstring). With several
  processes the axis length is a multiple of the process count (each process holds an equal share of seeds)."""
  devices = jax.devices()
  if requested < 0 or requested > len(devices):
    raise ConfigError(f"config.mesh.seeds={requested}: expected 0 (all) or at most the {len(devices)} devices")
  want = requested or len(devices)
  procs = jax.process_count()
  size = max((d for d in range(procs, min(n_seeds, want) + 1, procs) if n_seeds % d == 0), default=0)
  if procs == 1:
    size = largest_divisor(n_seeds, want)
  elif size == 0:
    raise ConfigError(
      f"config.seeds has {n_seeds} seeds: with {procs} processes every process needs its share, so the seed count "
      f"must have a divisor that is a multiple of {procs} and at most {want}",
      hint=f"use a multiple of {procs} seeds",
    )
  note = (
    f"{size} of {len(devices)} devices on the seed axis"
    if size == want
    else f"{n_seeds} seeds do not divide over {want} devices: using {size} (the largest divisor of the seed "
    f"count that fits); set config.mesh.seeds or the seed count to use more"
  )
  if size != want:
    logging.warning("Mesh: %s", note)
  per_process = size // procs  # the same number of devices from every process, so each holds its seeds
  chosen = [d for p in range(procs) for d in [x for x in devices if x.process_index == p][:per_process]]
  mesh = Mesh(np.asarray(chosen), (SEEDS,))
  info = {
    "device_kind": devices[0].device_kind,
    "platform": devices[0].platform,
    "device_count": len(devices),
    "process_count": jax.process_count(),
    "mesh_shape": {SEEDS: size},
    "note": note,
  }
  return SeedMesh(mesh, info)


def resample_mesh() -> Mesh:
  """All devices on one axis, for splitting bootstrap resamples."""
  return Mesh(np.asarray(jax.devices()), ("resamples",))


def put(x: Any, sharding: NamedSharding) -> Any:
  """Places a host array (pytree) identical on every process onto a sharding that may span processes."""

  def one(a):
    a = np.asarray(a)
    return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx], dtype=a.dtype)

  return jax.tree.map(one, x)


def gather(x: Any) -> Any:
  """Host NumPy copies of (possibly sharded, possibly multi-process) arrays, on every process."""
  if jax.process_count() == 1:
    return jax.device_get(x)
  return jax.tree.map(lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)), x)


def is_writer() -> bool:
  """Only process 0 writes files."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Every process waits here (a no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def per_seed(fn, mesh: Mesh | None = None):
  """jit of `fn(one_seed_args, shared_args)` applied seed by seed: `lax.map` over the leading (seed) axis of
  the first argument's leaves, the second argument shared. Each seed is computed by the same program whatever
  the number of seeds on a device, so the results do not depend on the device count (a vmap's batch size
  would change the float rounding). With a mesh of several devices, each device maps over its own seeds
  (`jax.shard_map`)."""

  def body(seeded, shared):
    return jax.lax.map(lambda one: fn(one, shared), seeded)

  if mesh is None or mesh.devices.size == 1:
    return jax.jit(body)
  return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P(SEEDS), P()), out_specs=P(SEEDS)))
