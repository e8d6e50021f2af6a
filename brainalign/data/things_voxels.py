"""Which voxel rows make up an ROI: unions of VoxelMetadata mask columns, optionally by reliability.

``docs/methods.md`` §7, step 2: an ROI (``things_layout.ROI_DEFINITIONS``, e.g. LOC = lLOC ∪ rLOC) is the union
of its 0/1 mask columns (``roi_voxel_rows``); ``select_voxels`` can also keep only the voxels with
``nc_testset > nc_testset_min`` (the Brain-Score convention, 30). Both return sorted rows ``[v]`` of
the ResponseData table (= ``voxel_id``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from brainalign.data.things_errors import ThingsFormatError, abbreviate
from brainalign.data.things_layout import ROI_COLUMNS

__all__ = ["roi_voxel_rows", "select_voxels"]


def roi_voxel_rows(
  voxel_metadata: pd.DataFrame, columns: Sequence[str], *, path: str | os.PathLike | None = None
) -> np.ndarray:
  """Rows of the voxels in the union of the 0/1 mask ``columns`` (e.g. ``('lLOC', 'rLOC')``).

  Returns:
    ``[v]`` int64, sorted ascending (the order h5py row selection needs).

  Raises:
    ThingsFormatError: a column is missing (the message lists the ROI columns available), holds
      values other than 0/1, or the union is empty.
  """
  where = path if path is not None else "VoxelMetadata"
  if isinstance(columns, str):
    columns = (columns,)
  if not columns:
    raise ValueError("roi_voxel_rows needs at least one mask column")
  missing = [c for c in columns if c not in voxel_metadata.columns]
  if missing:
    available = [c for c in voxel_metadata.columns if c in ROI_COLUMNS]
    hint = " (IT exists only in the v2 release; v1 has 41 columns)" if "IT" in missing else ""
    raise ThingsFormatError(f"{where}: ROI column(s) {missing} not found{hint}; available ROI columns: {available}")
  mask = np.zeros(len(voxel_metadata), dtype=bool)
  for c in columns:
    values = voxel_metadata[c].to_numpy()
    if not np.isin(values, (0, 1)).all():
      raise ThingsFormatError(f"{where}: ROI column {c!r} must hold 0/1, got {abbreviate(np.unique(values), 5)}")
    mask |= values == 1
  rows = np.flatnonzero(mask).astype(np.int64)
  if rows.size == 0:
    raise ThingsFormatError(f"{where}: ROI {'|'.join(columns)} has no voxels (all of {list(columns)} are 0)")
  return rows


def select_voxels(
  voxel_metadata: pd.DataFrame,
  columns: Sequence[str],
  *,
  nc_testset_min: float | None = None,
  path: str | os.PathLike | None = None,
) -> np.ndarray:
  """Voxel rows of an ROI (union of mask ``columns``), optionally only those with ``nc_testset > min``.

  ``nc_testset`` is the noise ceiling of the test set in percent (docs/data-formats.md §6.1); Brain-Score
  keeps voxels with ``nc_testset > 30``. Voxels whose ``nc_testset`` is NaN are not selected.

  Returns:
    ``[v]`` int64, sorted ascending.

  Raises:
    ThingsFormatError: missing/non-0/1 mask column or empty ROI (``roi_voxel_rows``); ``nc_testset``
      missing or not numeric; no voxel of the ROI passes the threshold (names file, ROI, threshold).
  """
  rows = roi_voxel_rows(voxel_metadata, columns, path=path)
  if nc_testset_min is None:
    return rows
  where = path if path is not None else "VoxelMetadata"
  if "nc_testset" not in voxel_metadata.columns:
    raise ThingsFormatError(
      f"{where}: column 'nc_testset' (noise ceiling, percent) not found; needed for "
      f"reliability-based voxel selection (nc_testset > {nc_testset_min})"
    )
  nc = voxel_metadata["nc_testset"]
  if not pd.api.types.is_numeric_dtype(nc):
    raise ThingsFormatError(f"{where}: column 'nc_testset' must be numeric (percent), got dtype {nc.dtype}")
  keep = rows[nc.to_numpy(np.float64)[rows] > float(nc_testset_min)]
  if keep.size == 0:
    raise ThingsFormatError(
      f"{where}: ROI {'|'.join(columns)} has no voxels with nc_testset > {nc_testset_min} "
      f"({rows.size} voxels in the mask; max nc_testset there "
      f"{np.nanmax(nc.to_numpy(np.float64)[rows]) if rows.size else float('nan'):.3g})"
    )
  return keep
