"""Atomic file writes: a killed run never leaves a half-written result under its final name."""

import contextlib
import json
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a temporary path next to `path`; on success it is renamed onto `path` (os.replace is atomic)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  os.close(fd)
  tmp = pathlib.Path(tmp)
  try:
    yield tmp
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are ordinary files
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
  """Writes a DataFrame as CSV (no index) atomically."""
  with atomic_path(path) as tmp:
    df.to_csv(tmp, index=False)


def write_json(obj: Any, path: str | os.PathLike) -> None:
  """Writes JSON (indented, sorted keys) atomically."""
  with atomic_path(path) as tmp:
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
  """Writes a compressed .npz atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez_compressed(f, **arrays)
