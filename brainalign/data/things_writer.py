"""Write files in the THINGS-fMRI ``betas_csv`` format exactly as published.

The public single-trial release (Hebart et al. 2023, figshare+ ``betas_csv``) holds three files per
subject (see ``docs/data-formats.md`` §3–§6):

* ``sub-XX_ResponseData.h5``: a pandas "fixed"-format HDF5 store with one DataFrame under the key
  ``ResponseData``; rows = voxels, columns = ``['voxel_id', 0, 1, …, n_trials-1]``; the float data
  live in ``/ResponseData/block0_values`` with shape ``[n_vox, n_trials]``.
* ``sub-XX_StimulusMetadata.csv``: one row per trial, header
  ``trial_type,session,run,subject_id,trial_id,stimulus,concept`` (v1 release: no ``concept``).
* ``sub-XX_VoxelMetadata.csv``: one row per voxel, 222 columns (13 leading + 29 ROI masks + 180
  Glasser parcels; the v1 release has 41: no ``IT`` and no ``glasser-*``).

This module writes such files (used by the test-fixture generator and the simulated-brain demo);
``brainalign.data.things`` reads them. PyTables is needed here only (pandas' ``to_hdf``).
The writer is split by job and this module re-exports every part's public names (``things_writer.<name>``):
``things_layout`` (file names and columns, shared with the reader), ``things_write_design`` (StimulusMetadata
rows), ``things_write_voxels`` (VoxelMetadata rows), and here ``write_subject`` (the three files, atomically).
No reader module imports the writer.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd

from brainalign.data.things_layout import (
  GLASSER_COLUMNS,
  LEADING_COLUMNS,
  ROI_COLUMNS,
  STIMULUS_COLUMNS,
  V1_ROI_COLUMNS,
  SubjectFiles,
  subject_file_names,
)
from brainalign.data.things_write_design import default_stimulus_name, make_design
from brainalign.data.things_write_voxels import _IT_GLASSER as _IT_GLASSER  # the IT parcels (tests compare)
from brainalign.data.things_write_voxels import make_voxel_metadata

__all__ = [
  "LEADING_COLUMNS",
  "ROI_COLUMNS",
  "GLASSER_COLUMNS",
  "V1_ROI_COLUMNS",
  "STIMULUS_COLUMNS",
  "default_stimulus_name",
  "make_design",
  "make_voxel_metadata",
  "SubjectFiles",
  "subject_file_names",
  "write_subject",
]


@contextlib.contextmanager
def _atomic_target(final: pathlib.Path) -> Iterator[pathlib.Path]:
  """Yield a temporary path next to ``final``; on success move it onto ``final`` (``os.replace``).

  On any error the temporary file is removed and ``final`` is left untouched.
  """
  tmp = final.with_name(f".{final.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
  try:
    yield tmp
    os.replace(tmp, final)
  except BaseException:
    with contextlib.suppress(OSError):
      tmp.unlink()
    raise


def _check_shapes(subject: str, stimulus_metadata, voxel_metadata, responses) -> np.ndarray:
  """``responses`` as float64 ``[n_vox, n_trials]``; ValueError unless 2-D, numeric and matching both tables."""
  responses = np.asarray(responses)
  if responses.ndim != 2:
    raise ValueError(f"{subject}: responses must be 2-D [n_vox, n_trials], got shape {responses.shape}")
  if not (np.issubdtype(responses.dtype, np.floating) or np.issubdtype(responses.dtype, np.integer)):
    raise ValueError(f"{subject}: responses must be numeric, got dtype {responses.dtype}")
  responses = responses.astype(np.float64, copy=False)
  n_vox, n_trials = responses.shape
  if n_vox != len(voxel_metadata):
    raise ValueError(
      f"{subject}: responses have {n_vox} rows (voxels) but voxel_metadata has "
      f"{len(voxel_metadata)} rows; they must match"
    )
  if n_trials != len(stimulus_metadata):
    raise ValueError(
      f"{subject}: responses have {n_trials} columns (trials) but stimulus_metadata "
      f"has {len(stimulus_metadata)} rows; they must match"
    )
  return responses


def write_subject(
  out_dir: str | os.PathLike,
  subject: str,
  stimulus_metadata: pd.DataFrame,
  voxel_metadata: pd.DataFrame,
  responses: np.ndarray,
  *,
  name_set: str = "public",
) -> SubjectFiles:
  """Write the three betas_csv files of one subject into ``out_dir`` (created if needed).

  Args:
    out_dir: target folder (the release's ``betas_csv/``).
    subject: e.g. ``'sub-01'``.
    stimulus_metadata: ``[n_trials, 7 or 6]`` rows as from ``make_design``.
    voxel_metadata: ``[n_vox, 222 or 41]`` rows as from ``make_voxel_metadata``.
    responses: ``[n_vox, n_trials]`` single-trial responses (stored as float64; NaN is written as is).
    name_set: ``'public'`` or ``'reference'`` file names (``subject_file_names``).

  The HDF5 file is written exactly as pandas writes the release's DataFrame
  (``df = pd.DataFrame(responses); df.insert(0, 'voxel_id', arange(n_vox));
  df.to_hdf(path, key='ResponseData', mode='w')``, fixed format); the CSVs with ``index=False``,
  UTF-8 and LF line endings. Every file is written to a temporary name in ``out_dir`` and then
  renamed, so an interrupted run never leaves a partial file under a final name.

  Returns:
    The paths written.
  """
  responses = _check_shapes(subject, stimulus_metadata, voxel_metadata, responses)
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  resp_name, stim_name, vox_name = subject_file_names(subject, name_set)
  files = SubjectFiles(subject, out / resp_name, out / stim_name, out / vox_name)

  for frame, path in ((stimulus_metadata, files.stimulus_metadata), (voxel_metadata, files.voxel_metadata)):
    with _atomic_target(path) as tmp:
      frame.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")

  df = pd.DataFrame(responses, copy=False)
  df.insert(0, "voxel_id", np.arange(len(responses), dtype=np.int64))
  with _atomic_target(files.responses) as tmp:
    with warnings.catch_warnings():
      # The mixed column index ['voxel_id', 0, 1, …] is pickled, as in the release.
      warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
      df.to_hdf(tmp, key="ResponseData", mode="w")
  return files
