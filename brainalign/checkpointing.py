"""A thin wrapper around Orbax's CheckpointManager: one checkpoint per milestone epoch, labelled by the epoch.

The saved item is the complete multi-seed TrainState (parameters, batch statistics, optimiser and rule
state, step, epoch and each seed's key), so a killed run resumes from its latest milestone and replays
exactly the same computation as an uninterrupted run.
"""

import os
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from brainalign.errors import WorkdirError


class CheckpointError(WorkdirError):
  """A checkpoint exists but cannot be restored (corrupt, truncated, or from another configuration)."""


def create_manager(directory: str | os.PathLike) -> ocp.CheckpointManager:
  """Manager that keeps every milestone. Orbax needs an absolute path."""
  path = pathlib.Path(directory).expanduser().resolve()
  return ocp.CheckpointManager(
    path, options=ocp.CheckpointManagerOptions(max_to_keep=None, create=True, cleanup_tmp_directories=True)
  )


def save(manager: ocp.CheckpointManager, epoch: int, state: Any) -> None:
  """Saves `state` under label `epoch` (asynchronously; call manager.wait_until_finished() before exit)."""
  manager.save(int(epoch), args=ocp.args.StandardSave(state))


def restore_latest(manager: ocp.CheckpointManager, target: Any) -> tuple[int | None, Any]:
  """Restores the latest checkpoint into the structure of `target` (an abstract or concrete state).

  Returns (epoch, state), or (None, target) when there is no checkpoint yet. A checkpoint that cannot be
  read raises CheckpointError naming its directory (delete it to restart from the previous milestone).
  """
  epoch = manager.latest_step()
  if epoch is None:
    return None, target
  return epoch, restore_epoch(manager, epoch, target)


def restore_epoch(manager: ocp.CheckpointManager, epoch: int, target: Any) -> Any:
  """Restores the checkpoint of `epoch` into the structure of `target`.

  A checkpoint that cannot be read raises CheckpointError naming its directory.
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  try:
    return manager.restore(int(epoch), args=ocp.args.StandardRestore(abstract))
  except Exception as e:  # orbax raises several types for unreadable or mismatched data
    folder = manager.directory / str(epoch)
    first_line = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    raise CheckpointError(
      f"cannot restore checkpoint {folder}: {type(e).__name__}: {first_line}; it may be corrupt (a killed write), "
      "or written by a different configuration (model size, seeds, rule)",
      hint=f"delete {folder} to resume from the previous milestone, or use a new --workdir",
    ) from None
