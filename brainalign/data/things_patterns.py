"""From the ResponseData file to z-scored ROI patterns ``[n, v]``, a few voxel rows at a time.

``docs/methods.md`` §7, step 3 (``docs/data-formats.md`` §4): the responses are the HDF5 dataset
``ResponseData/block0_values`` ``[n_vox, n_trials]`` (``things_layout.RESPONSE_DATASET``), read with h5py,
ROI rows only (``read_voxel_rows``): the whole table of a subject is ≈16.6 GB and is never loaded. Each
voxel is z-scored (``ZSCORE_MODES``: across all trials of the file, within each (session, run), or within
each session), then the selected trial columns are kept and, for averaged selections, combined into items.

Memory: ``roi_patterns`` reads ROI rows ``_CHUNK_BYTES`` at a time and z-scores them in place; only the
selected trial columns of each chunk are kept, so the peak is about one chunk plus the ``[n, v]`` patterns.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import h5py
import numpy as np
import pandas as pd

from brainalign.data.things_errors import ThingsFormatError, abbreviate
from brainalign.data.things_layout import RESPONSE_DATASET, SubjectFiles

__all__ = ["ZSCORE_MODES", "read_voxel_rows", "zscore", "zscore_groups", "roi_patterns"]

#: Response normalisations (``load_things_fmri(zscore=…)``, ``config.brain.zscore``).
ZSCORE_MODES = ("all", "run", "session")

_DATASET = RESPONSE_DATASET
# Bytes of voxel rows read (and z-scored in place) at a time: 8 MB = 106 voxels of 9,840 float64 trials.
_CHUNK_BYTES = 8 * 2**20


def _check_dataset(dset, h5_path, uniq: np.ndarray, n_trials: int | None, n_voxels: int | None) -> None:
  """The dataset is 2-D, numeric, of the expected shape, and holds the requested rows."""
  if dset.ndim != 2:
    raise ThingsFormatError(f"{h5_path}: {_DATASET} must be 2-D [voxels, trials], got shape {dset.shape}")
  if not np.issubdtype(dset.dtype, np.number):
    raise ThingsFormatError(f"{h5_path}: {_DATASET} must be numeric, got dtype {dset.dtype}")
  n_vox_file, n_trials_file = dset.shape
  if n_trials is not None and n_trials_file != n_trials:
    raise ThingsFormatError(
      f"{h5_path}: {_DATASET} has {n_trials_file} trial columns, expected {n_trials} (rows of the StimulusMetadata)"
    )
  if n_voxels is not None and n_vox_file != n_voxels:
    raise ThingsFormatError(
      f"{h5_path}: {_DATASET} has {n_vox_file} voxel rows, expected {n_voxels} (rows of the VoxelMetadata)"
    )
  if uniq.size and (uniq[0] < 0 or uniq[-1] >= n_vox_file):
    raise ThingsFormatError(
      f"{h5_path}: voxel rows must lie in 0…{n_vox_file - 1}; requested {int(uniq[0])}…{int(uniq[-1])}"
    )


def _read_sorted_rows(h5_path, uniq: np.ndarray, n_trials: int | None, n_voxels: int | None) -> np.ndarray:
  """``[u, n_trials]`` float64 rows ``uniq`` (sorted, unique), each run of consecutive rows read as one slice."""
  try:
    with h5py.File(h5_path, "r") as f:
      if _DATASET not in f:
        raise ThingsFormatError(
          f"{h5_path}: HDF5 dataset {_DATASET!r} not found (top-level nodes: {list(f.keys())}); "
          f"expected the pandas fixed-format store of the THINGS ResponseData table"
        )
      dset = f[_DATASET]
      _check_dataset(dset, h5_path, uniq, n_trials, n_voxels)
      out = np.empty((uniq.size, dset.shape[1]), dtype=np.float64)
      # Split the sorted rows into runs of consecutive indices; read each run as one slice.
      breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
      starts = np.concatenate([[0], breaks])
      ends = np.concatenate([breaks, [uniq.size]])
      for s, e in zip(starts, ends):
        if s < e:
          out[s:e] = dset[int(uniq[s]) : int(uniq[e - 1]) + 1, :]
  except OSError as e:
    raise ThingsFormatError(f"{h5_path}: cannot read the ResponseData HDF5 file (truncated or corrupt?): {e}") from e
  return out


def read_voxel_rows(
  h5_path: str | os.PathLike, rows: np.ndarray, *, n_trials: int | None = None, n_voxels: int | None = None
) -> np.ndarray:
  """Read the responses of some voxels from ``ResponseData/block0_values`` with h5py.

  Only the requested rows are read (contiguous runs of rows as slices); rows may be given in any
  order and are returned in that order.

  Args:
    h5_path: the ResponseData HDF5 file.
    rows: ``[v]`` voxel rows (= voxel_id).
    n_trials: expected number of columns (trials); checked when given.
    n_voxels: expected number of rows (voxels) of the dataset; checked when given.

  Returns:
    ``[v, n_trials]`` float64 (the stored dtype is not assumed).

  Raises:
    ThingsFormatError: unreadable/truncated file, missing dataset, wrong shape, rows out of range, or
      any non-finite value in the requested rows (the message names the file and voxel ids).
  """
  rows = np.asarray(rows)
  if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
    raise ValueError(f"rows must be a 1-D integer array, got shape {rows.shape}, dtype {rows.dtype}")
  rows = rows.astype(np.int64)
  uniq, inverse = np.unique(rows, return_inverse=True)
  out = _read_sorted_rows(h5_path, uniq, n_trials, n_voxels)
  bad = ~np.isfinite(out)
  if bad.any():
    bad_rows = np.flatnonzero(bad.any(axis=1))
    raise ThingsFormatError(
      f"{h5_path}: non-finite (NaN/inf) responses in {_DATASET} for voxel_id(s) "
      f"{abbreviate(uniq[bad_rows].tolist())} ({int(bad.sum())} values); expected finite values"
    )
  if uniq.size == rows.size and (rows.size < 2 or bool(np.all(np.diff(rows) > 0))):
    return out  # already in the requested order: no copy
  return out[inverse]


def zscore(x: np.ndarray, axis: int = 1, *, labels: Sequence | None = None, source: str | None = None) -> np.ndarray:
  """Z-score ``x`` along ``axis`` (population std, ddof=0).

  For responses ``[v, n_trials]`` with ``axis=1`` this standardises each voxel across trials.

  Args:
    x: array; ``labels`` (optional) names its entries along the other axis (e.g. voxel ids) and
      ``source`` (optional) the file, both used in error messages.

  Returns:
    float64 array of ``x``'s shape.

  Raises:
    ThingsFormatError: an entry has zero variance (or non-finite values); the message names it.
  """
  x = np.asarray(x, dtype=np.float64)
  mean = x.mean(axis=axis, keepdims=True)
  std = x.std(axis=axis, keepdims=True)
  bad = ~(np.isfinite(std) & (std > 0))
  if bad.any():
    idx = np.flatnonzero(np.squeeze(bad, axis=axis))  # flat index over the other axes
    names = [labels[i] for i in idx] if labels is not None else idx.tolist()
    where = f"{source}: " if source else ""
    raise ThingsFormatError(
      f"{where}cannot z-score: zero variance (constant) or non-finite values along axis {axis} "
      f"for {'voxel_id' if labels is not None else 'index'}(s) {abbreviate(names)}"
    )
  return (x - mean) / std


def zscore_groups(stimulus_metadata: pd.DataFrame, mode: str) -> np.ndarray | None:
  """The trial groups a z-score mode standardises within: ``[n_trials]`` int64, or None for ``'all'``.

  ``'run'``: ``session * 100 + run``; ``'session'``: ``session``.
  """
  if mode == "run":
    return stimulus_metadata["session"].to_numpy(np.int64) * 100 + stimulus_metadata["run"].to_numpy(np.int64)
  if mode == "session":
    return stimulus_metadata["session"].to_numpy(np.int64)
  return None


def _zscore_inplace(x: np.ndarray, groups: np.ndarray | None, labels: Sequence, source: str) -> None:
  """Z-score rows of ``x [v, T]`` in place, across all columns or within each group of columns."""
  blocks = [slice(None)] if groups is None else [np.flatnonzero(groups == g) for g in np.unique(groups)]
  for cols in blocks:
    part = x[:, cols] if groups is not None else x
    mean = part.mean(axis=1, keepdims=True)
    std = part.std(axis=1, keepdims=True)
    bad = ~(np.isfinite(std[:, 0]) & (std[:, 0] > 0))
    if bad.any():
      what = "" if groups is None else f" within trials of group {int(groups[cols[0]])} (session*100+run or session)"
      raise ThingsFormatError(
        f"{source}: cannot z-score{what}: zero variance (constant) or non-finite values for voxel_id(s) "
        f"{abbreviate([labels[i] for i in np.flatnonzero(bad)])}"
      )
    if groups is None:
      x -= mean
      x /= std
    else:
      x[:, cols] = (part - mean) / std


def roi_patterns(
  files: SubjectFiles,
  rows: np.ndarray,
  trial_ids: np.ndarray,
  n_trials: int,
  n_vox: int,
  *,
  groups: np.ndarray | None = None,
  averaging: np.ndarray | None = None,
  read_rows: Callable[..., np.ndarray] = read_voxel_rows,
) -> np.ndarray:
  """``[n, v]`` z-scored patterns of the selected trials, read ``_CHUNK_BYTES`` of rows at a time.

  Args:
    files: the subject's files (``files.responses`` is read).
    rows: ``[v]`` voxel rows of the ROI (``things_voxels.select_voxels``).
    trial_ids: ``[m]`` columns kept, after z-scoring each voxel over all ``n_trials`` columns or within
      ``groups [n_trials]`` (``zscore_groups``).
    n_trials, n_vox: the shape the ResponseData dataset must have (the two metadata tables' lengths).
    averaging: ``[n, m]`` (optional, ``Selection.averaging_matrix``) combines the kept trials into items;
      without it ``n = m``.
    read_rows: the row reader (``read_voxel_rows``); the loader passes its own module's, so that a test
      which replaces ``things.read_voxel_rows`` sees every read.

  Returns:
    ``[n, v]`` float64.
  """
  n_out = trial_ids.size if averaging is None else averaging.shape[0]
  out = np.empty((n_out, rows.size), dtype=np.float64)
  step = max(1, _CHUNK_BYTES // (8 * max(n_trials, 1)))
  for start in range(0, rows.size, step):
    chunk = rows[start : start + step]
    data = read_rows(files.responses, chunk, n_trials=n_trials, n_voxels=n_vox)
    _zscore_inplace(data, groups, chunk.tolist(), str(files.responses))
    picked = data[:, trial_ids]  # [c, m]
    del data
    out[:, start : start + chunk.size] = picked.T if averaging is None else averaging @ picked.T
  return out
