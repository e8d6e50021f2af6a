"""Find a subject's THINGS-fMRI files and read its two metadata tables, checked (``docs/data-formats.md`` §3, §5, §6).

* ``find_subject_files``: the three files of a subject under the public or the reference names.
* ``read_stimulus_metadata``: ``sub-XX_StimulusMetadata.csv`` ``[n_trials]`` (``trial_id`` = row number =
  column of the responses; ``concept`` added for the v1 release).
* ``read_voxel_metadata``: ``sub-XX_VoxelMetadata.csv`` ``[n_vox]`` (``voxel_id`` = row number = row of the
  responses), with a real CSV parser (two Glasser column names contain newlines).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pandas as pd
from absl import logging

from brainalign.data.things_errors import ThingsFormatError, abbreviate
from brainalign.data.things_layout import SubjectFiles, subject_file_names
from brainalign.errors import MissingFileError

__all__ = ["find_subject_files", "read_stimulus_metadata", "read_voxel_metadata"]

_STIMULUS_REQUIRED = {
  "trial_type": "string",
  "session": "integer",
  "run": "integer",
  "trial_id": "integer",
  "stimulus": "string",
}


def find_subject_files(betas_dir: str | os.PathLike, subject: str) -> SubjectFiles:
  """Locate a subject's three files in ``betas_dir`` (or in ``betas_dir/betas_csv``).

  The public names (``sub-01_ResponseData.h5``, …) are preferred; otherwise the reference
  implementation's names (``sub-01_task-things_voxel-wise-responses.h5``, …). A name set counts only
  when all three of its files exist.

  Raises:
    FileNotFoundError: no complete name set; the message lists every path tried and which exist.
  """
  root = pathlib.Path(betas_dir)
  folders = [root]
  if (root / "betas_csv").is_dir():
    folders.append(root / "betas_csv")
  tried = []
  for folder in folders:
    for name_set in ("public", "reference"):
      paths = [folder / name for name in subject_file_names(subject, name_set)]
      if all(p.is_file() for p in paths):
        return SubjectFiles(subject, *paths)
      tried.extend(paths)
  listing = "\n".join(f"  {p} ({'exists' if p.is_file() else 'missing'})" for p in tried)
  raise MissingFileError(
    f"THINGS-fMRI files of {subject} not found under {root}: need all three files of the public "
    f"or the reference name set. Paths tried:\n{listing}"
  )


def _read_csv(path: str | os.PathLike, what: str) -> pd.DataFrame:
  try:
    return pd.read_csv(path)
  except FileNotFoundError:
    raise
  except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
    raise ThingsFormatError(f"{path}: cannot parse {what} CSV: {e}") from e


def _check_stimulus_columns(df: pd.DataFrame, path: str | os.PathLike) -> None:
  """The required columns exist, are complete and hold integers / strings."""
  missing = [c for c in _STIMULUS_REQUIRED if c not in df.columns]
  if missing:
    raise ThingsFormatError(
      f"{path}: StimulusMetadata lacks column(s) {missing}; expected at least "
      f"{list(_STIMULUS_REQUIRED)} (found {list(df.columns)})"
    )
  for col, kind in _STIMULUS_REQUIRED.items():
    if df[col].isna().any():
      rows = np.flatnonzero(df[col].isna().to_numpy())
      raise ThingsFormatError(f"{path}: column {col!r} has empty values in rows {abbreviate(rows)}")
    ok = (
      pd.api.types.is_integer_dtype(df[col])
      if kind == "integer"
      else pd.api.types.is_string_dtype(df[col]) or df[col].dtype == object
    )
    if not ok:
      raise ThingsFormatError(f"{path}: column {col!r} must hold {kind} values, got dtype {df[col].dtype}")


def _add_or_check_concept(df: pd.DataFrame, path: str | os.PathLike) -> None:
  """Add ``concept = stimulus.rsplit('_', 1)[0]`` when absent (v1); else warn about rows that differ from it."""
  derived = df["stimulus"].astype(str).str.rsplit("_", n=1).str[0]
  if "concept" not in df.columns:
    df["concept"] = derived
    return
  mismatch = np.flatnonzero(df["concept"].astype(str).to_numpy() != derived.to_numpy())
  if mismatch.size:
    logging.warning(
      "%s: %d rows whose concept differs from stimulus.rsplit('_', 1)[0], e.g. "
      "row %d (%r, %r); selection uses the concept column",
      path,
      mismatch.size,
      mismatch[0],
      df["concept"].iloc[mismatch[0]],
      df["stimulus"].iloc[mismatch[0]],
    )


def read_stimulus_metadata(path: str | os.PathLike) -> pd.DataFrame:
  """Read and check ``sub-XX_StimulusMetadata.csv``.

  Checks that the columns ``trial_type, session, run, trial_id, stimulus`` exist, are complete and
  have the expected types (integers / strings), and that ``trial_id`` equals the row number (it is
  the column index of the responses). When ``concept`` is absent (v1 release) it is added as
  ``stimulus.rsplit('_', 1)[0]``.

  Returns:
    DataFrame ``[n_trials, ≥ 6]`` with a RangeIndex.
  """
  df = _read_csv(path, "StimulusMetadata")
  _check_stimulus_columns(df, path)
  trial_id = df["trial_id"].to_numpy()
  bad = np.flatnonzero(trial_id != np.arange(len(df)))
  if bad.size:
    i = int(bad[0])
    raise ThingsFormatError(
      f"{path}: column 'trial_id' must equal the row number 0…{len(df) - 1} (it indexes the "
      f"ResponseData columns); row {i} has trial_id {int(trial_id[i])}"
    )
  _add_or_check_concept(df, path)
  return df


def read_voxel_metadata(path: str | os.PathLike) -> pd.DataFrame:
  """Read ``sub-XX_VoxelMetadata.csv`` with a real CSV parser (two Glasser names contain newlines).

  Checks that ``voxel_id`` exists and equals the row number (= the ResponseData row).

  Returns:
    DataFrame ``[n_vox, 222]`` (v2) or ``[n_vox, 41]`` (v1).
  """
  df = _read_csv(path, "VoxelMetadata")
  if "voxel_id" not in df.columns:
    raise ThingsFormatError(f"{path}: VoxelMetadata lacks column 'voxel_id' (found {abbreviate(df.columns)})")
  vid = df["voxel_id"].to_numpy()
  if not pd.api.types.is_integer_dtype(df["voxel_id"]) or not np.array_equal(vid, np.arange(len(df))):
    raise ThingsFormatError(
      f"{path}: column 'voxel_id' must equal the row number 0…{len(df) - 1} "
      f"(the ResponseData row); got {abbreviate(vid, 5)}"
    )
  return df
