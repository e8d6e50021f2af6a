"""VoxelMetadata rows of a synthetic subject: coordinates, noise ceilings, pRF fits, ROI masks, Glasser parcels.

Used by the writer (``things_writer``, re-exported there) for test fixtures and the simulated brain; the
columns are ``things_layout``'s (``docs/data-formats.md`` §6): ``LEADING_COLUMNS`` (random but plausible values),
``ROI_COLUMNS`` (voxels laid out in disjoint ROI blocks) and, for v2, ``GLASSER_COLUMNS`` (each voxel in at
most one parcel, the early visual and IT ROIs in their matching parcels).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from brainalign.data.things_layout import (
  GLASSER_COLUMNS,
  LEADING_COLUMNS,
  ROI_COLUMNS,
  V1_ROI_COLUMNS,
  check_release,
)

__all__ = ["make_voxel_metadata"]

# Glasser parcels whose union the official notebook and brain-score use as IT (docs/data-formats.md §6.2);
# the writer puts the voxels of the ``IT`` ROI into these parcels so the two definitions roughly agree.
_IT_GLASSER = (
  "glasser-TE1p",
  "glasser-TE2p",
  "glasser-FFC",
  "glasser-VVC",
  "glasser-VMV2",
  "glasser-VMV3",
  "glasser-PHA1",
  "glasser-PHA2",
  "glasser-PHA3",
)
_ROI_TO_GLASSER = {"V1": "glasser-V1", "V2": "glasser-V2", "V3": "glasser-V3", "hV4": "glasser-V4"}
# Voxel-index grid of the synthetic T1w brain mask the coordinates are drawn from.
_GRID_SHAPE = (72, 88, 72)


def _checked_sizes(roi_sizes: Mapping[str, int], n_other: int, roi_cols: tuple[str, ...], release: str) -> dict:
  """``{ROI column: voxels}`` as ints; ValueError for an unknown column, a negative size or no voxel at all."""
  for name, size in roi_sizes.items():
    if name not in roi_cols:
      hint = " (IT exists only in the v2 release)" if name == "IT" else ""
      raise ValueError(f"unknown ROI column {name!r} for release {release}{hint}; expected one of {list(roi_cols)}")
    if int(size) < 0:
      raise ValueError(f"ROI size must be >= 0, got {name}={size}")
  if int(n_other) < 0:
    raise ValueError(f"n_other must be >= 0, got {n_other}")
  sizes = {name: int(size) for name, size in roi_sizes.items()}
  n = sum(sizes.values()) + int(n_other)
  if n == 0:
    raise ValueError("make_voxel_metadata needs at least one voxel")
  grid = int(np.prod(_GRID_SHAPE))
  if n > grid:
    raise ValueError(f"at most {grid} voxels supported, got {n}")
  return sizes


def _leading_columns(rng: np.random.Generator, n: int, subject_id: int) -> dict[str, np.ndarray]:
  """The 13 ``LEADING_COLUMNS`` ``[n]`` each, in file order."""
  flat = np.sort(rng.choice(int(np.prod(_GRID_SHAPE)), size=n, replace=False))
  x, y, z = np.unravel_index(flat, _GRID_SHAPE)
  nc_testset = rng.uniform(0.0, 100.0, n)
  nc_singletrial = nc_testset * rng.uniform(0.05, 0.3, n)
  split_unc = rng.uniform(-0.2, 0.8, n)
  split_cor = 2 * split_unc / (1 + split_unc)  # Spearman-Brown
  has_prf = rng.random(n) < 0.6
  has_prf[-1] = False  # at least one voxel without a pRF fit (all prf-* exactly 0)
  if n > 1:
    has_prf[0] = True
  prf = {
    "prf-eccentricity": rng.uniform(0.1, 10.0, n),
    "prf-polarangle": rng.uniform(0.0, 360.0, n),
    "prf-rsquared": rng.uniform(0.5, 80.0, n),
    "prf-size": rng.uniform(0.1, 5.0, n),
  }
  columns: dict[str, np.ndarray] = {
    "voxel_id": np.arange(n, dtype=np.int64),
    "subject_id": np.full(n, int(subject_id), dtype=np.int64),
    "voxel_x": x.astype(np.int64),
    "voxel_y": y.astype(np.int64),
    "voxel_z": z.astype(np.int64),
    "nc_singletrial": nc_singletrial,
    "nc_testset": nc_testset,
    "splithalf_uncorrected": split_unc,
    "splithalf_corrected": split_cor,
  }
  for name, values in prf.items():
    columns[name] = np.where(has_prf, values, 0.0)
  assert tuple(columns) == LEADING_COLUMNS
  return columns


def _glasser_columns(rng: np.random.Generator, roi_of_voxel: np.ndarray) -> dict[str, np.ndarray]:
  """The 180 ``GLASSER_COLUMNS`` ``[n]`` int64 0/1: a random parcel (or none) per voxel, ROIs in their own."""
  n = roi_of_voxel.size
  parcel = rng.integers(-1, len(GLASSER_COLUMNS), size=n)  # -1: no parcel
  it_parcels = np.array([GLASSER_COLUMNS.index(p) for p in _IT_GLASSER])
  parcel = np.where(roi_of_voxel == "IT", rng.choice(it_parcels, size=n), parcel)
  for roi, glasser in _ROI_TO_GLASSER.items():
    parcel = np.where(roi_of_voxel == roi, GLASSER_COLUMNS.index(glasser), parcel)
  return {name: (parcel == k).astype(np.int64) for k, name in enumerate(GLASSER_COLUMNS)}


def make_voxel_metadata(
  subject_id: int,
  roi_sizes: Mapping[str, int],
  n_other: int,
  *,
  seed: int,
  release: str = "v2",
) -> pd.DataFrame:
  """VoxelMetadata rows (one per voxel) of one subject.

  Args:
    subject_id: value of the ``subject_id`` column.
    roi_sizes: ROI column name (one of ``ROI_COLUMNS``; not ``IT`` for v1) -> number of voxels.
      Voxels are laid out in blocks, in this mapping's order: the first ``roi_sizes[a]`` voxels have
      ``a = 1``, the next ``roi_sizes[b]`` have ``b = 1``, …; ROIs are therefore disjoint.
    n_other: voxels after the ROI blocks that lie in no ROI.
    seed: seed of the random columns (coordinates, noise ceilings, pRF, Glasser parcels). The 13
      leading columns do not depend on ``release``.
    release: ``'v2'``: all 222 columns (``LEADING_COLUMNS + ROI_COLUMNS + GLASSER_COLUMNS``);
      ``'v1'``: 41 columns (``LEADING_COLUMNS`` + the 28 ROI columns without ``IT``).

  Returns:
    DataFrame ``[n_vox, 222 or 41]``, ``n_vox = sum(roi_sizes.values()) + n_other``. ``voxel_id =
    0 … n_vox-1``; coordinates unique and in C order over (x, y, z); ``nc_*`` in percent (0–100);
    ``prf-*`` exactly 0 for voxels without a pRF fit (at least one); ROI and Glasser columns int64 0/1
    (each voxel in at most one Glasser parcel).
  """
  check_release(release)
  roi_cols = ROI_COLUMNS if release == "v2" else V1_ROI_COLUMNS
  sizes = _checked_sizes(roi_sizes, n_other, roi_cols, release)
  n = sum(sizes.values()) + int(n_other)
  rng = np.random.default_rng(seed)
  columns = _leading_columns(rng, n, subject_id)
  roi_of_voxel = np.full(n, "", dtype=object)
  start = 0
  masks = {name: np.zeros(n, dtype=np.int64) for name in roi_cols}
  for name, size in sizes.items():
    masks[name][start : start + size] = 1
    roi_of_voxel[start : start + size] = name
    start += size
  columns.update(masks)
  if release == "v2":
    columns.update(_glasser_columns(rng, roi_of_voxel))
  return pd.DataFrame(columns)
