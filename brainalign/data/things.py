"""Load THINGS-fMRI single-trial responses (``betas_csv`` release) and build the study's brain RDMs.

Files per subject (``docs/data-formats.md`` §3–§6; written for tests by ``things_writer``):

* ``sub-XX_ResponseData.h5``: pandas fixed-format store; the data are the HDF5 dataset
  ``ResponseData/block0_values`` of shape ``[n_vox, n_trials]`` (rows in ``voxel_id`` order, columns
  in ``trial_id`` order). It is read with h5py, ROI rows only: the whole table of a subject is
  ≈16.6 GB and is never loaded.
* ``sub-XX_StimulusMetadata.csv``: ``[n_trials]`` rows, ``trial_id`` = row number = column of the
  responses.
* ``sub-XX_VoxelMetadata.csv``: ``[n_vox]`` rows with 0/1 ROI mask columns.

The study's recipe (``docs/methods.md`` §7), implemented by ``load_things_fmri`` (defaults in brackets; each
step has the alternatives the issue asks for):

1. stimulus selection (``SELECTIONS``) [``first_exemplar``]: per train concept (sorted) the
   alphabetically first stimulus, one trial each (720 in the release, all from one session);
   ``concept_mean``: all train trials of each concept (12 exemplars) averaged per concept;
   ``test_mean``: the test images (100 in the release), each averaged over its repetitions (12);
2. voxel selection per ROI (``ROI_DEFINITIONS``: named unions of mask columns, e.g. LOC = lLOC ∪ rLOC)
   [mask only]; optionally also ``nc_testset > nc_testset_min`` (the Brain-Score convention, 30);
3. normalisation (``ZSCORE_MODES``) [``all``]: z-score each voxel across ALL trials of the file;
   ``run``: within each (session, run); ``session``: within each session; then take (and average)
   the selected trial columns → patterns ``[n, v]``;
4. RDM = 1 − Pearson correlation across voxels (``correlation_rdm``), kept as its strict upper
   triangle ``[P]``, ``P = n (n − 1) / 2``, in ``np.triu_indices(n, k=1)`` order.

Memory: ROI rows are read ``things_patterns._CHUNK_BYTES`` at a time and z-scored in place; only the
selected trial columns of each chunk are kept, so the peak is about one chunk plus the ``[n, v]`` patterns.

The reference implementation's file names (``sub-XX_task-things_voxel-wise-responses.h5`` …) are
accepted as well (``find_subject_files``).

The reader is split by job; this module is the loader and re-exports every part's public names
(``things.<name>``): ``things_layout`` (file names, columns, subjects, ROI definitions; shared with the
writer ``things_writer``), ``things_errors`` (``ThingsFormatError``), ``things_metadata`` (files and metadata
tables), ``things_selection`` (step 1), ``things_voxels`` (step 2), ``things_patterns`` (step 3), and here
the RDMs (step 4), ``load_things_fmri`` and ``cross_run_mask``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from absl import logging

from brainalign.data.brain import BrainData
from brainalign.data.things_errors import ThingsFormatError, abbreviate
from brainalign.data.things_layout import ROI_DEFINITIONS, SUBJECTS, SubjectFiles
from brainalign.data.things_metadata import find_subject_files, read_stimulus_metadata, read_voxel_metadata
from brainalign.data.things_patterns import ZSCORE_MODES, read_voxel_rows, roi_patterns, zscore, zscore_groups
from brainalign.data.things_selection import SELECTIONS, Selection, select_first_exemplars, select_trials
from brainalign.data.things_voxels import roi_voxel_rows, select_voxels

__all__ = [
  "ROI_DEFINITIONS",
  "SUBJECTS",
  "ThingsFormatError",
  "SubjectFiles",
  "find_subject_files",
  "read_stimulus_metadata",
  "read_voxel_metadata",
  "roi_voxel_rows",
  "read_voxel_rows",
  "zscore",
  "select_first_exemplars",
  "SELECTIONS",
  "ZSCORE_MODES",
  "Selection",
  "select_trials",
  "select_voxels",
  "correlation_rdm",
  "BrainData",
  "load_things_fmri",
  "cross_run_mask",
]


def correlation_rdm(patterns: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
  """Correlation-distance RDM: ``1 - Pearson r`` between rows.

  Args:
    patterns: ``[n, v]`` (stimuli × voxels/features).
    overwrite: a float64 ``patterns`` may be centred and scaled in place (saves one copy).

  Returns:
    ``[n, n]`` float64, symmetric, zero diagonal; equal (to rounding) to
    ``scipy.spatial.distance.squareform(pdist(patterns, 'correlation'))``.

  Raises:
    ValueError: a row is constant or non-finite (its correlation is undefined; SciPy would give NaN).
  """
  x = np.asarray(patterns, dtype=np.float64)
  if x.ndim != 2:
    raise ValueError(f"patterns must be 2-D [n, v], got shape {x.shape}")
  if overwrite and x is patterns:
    x -= x.mean(axis=1, keepdims=True)
  else:
    x = x - x.mean(axis=1, keepdims=True)
  norm = np.linalg.norm(x, axis=1)
  bad = np.flatnonzero(~(np.isfinite(norm) & (norm > 0)))
  if bad.size:
    raise ValueError(f"correlation RDM undefined: rows {abbreviate(bad.tolist())} are constant or non-finite")
  x /= norm[:, None]
  rdm = x @ x.T
  np.subtract(1.0, rdm, out=rdm)
  rdm += rdm.T.copy()
  rdm *= 0.5
  np.fill_diagonal(rdm, 0.0)
  return rdm


def _describe(selection: str, zscore: str, nc_testset_min: float | None) -> str:
  sel = {
    "first_exemplar": "first exemplar per concept, one trial each",
    "concept_mean": "all exemplars averaged per concept",
    "test_mean": "test images averaged over repetitions",
  }[selection]
  z = {
    "all": "z-scored per voxel across all trials",
    "run": "z-scored per voxel within runs",
    "session": "z-scored per voxel within sessions",
  }[zscore]
  vox = "voxels by ROI mask" if nc_testset_min is None else f"voxels by ROI mask and nc_testset > {nc_testset_min:g}"
  return f"selection={selection} ({sel}); zscore={zscore} ({z}); {vox}"


@dataclasses.dataclass(frozen=True)
class _Reference:
  """The first subject's selection, which every other subject's must equal."""

  subject: str
  selection: Selection
  exemplars: tuple[tuple[str, ...], np.ndarray]


def _check_same_rows(ref: _Reference, subject: str, sel: Selection, exemplars, path, selection: str) -> None:
  """Raise unless ``subject``'s rows hold the reference subject's stimuli and images (names the differences)."""
  a, b = list(ref.selection.items["stimulus"]), list(sel.items["stimulus"])
  if b != a:
    diffs = [f"row {i}: {ref.subject} {x!r} vs {subject} {y!r}" for i, (x, y) in enumerate(zip(a, b)) if x != y][:5]
    if len(a) != len(b):
      diffs.append(f"{ref.subject} has {len(a)} stimuli, {subject} has {len(b)}")
    raise ThingsFormatError(
      f"{path}: selected stimuli of {subject} differ from those of "
      f"{ref.subject}; expected identical lists. First differences: " + "; ".join(diffs)
    )
  if exemplars[0] != ref.exemplars[0] or not np.array_equal(exemplars[1], ref.exemplars[1]):
    diffs = sorted(set(exemplars[0]) ^ set(ref.exemplars[0]))
    raise ThingsFormatError(
      f"{path}: the images averaged into the rows ({selection!r}) differ "
      f"between {ref.subject} and {subject}; expected the same images per row for every "
      f"subject. Images in only one of them: {abbreviate(diffs)}"
    )


@dataclasses.dataclass(frozen=True)
class _SubjectRdms:
  """One subject's part of the ``BrainData``."""

  rdms: np.ndarray  # [R, P]
  n_voxels: list[int]  # [R]
  runs: np.ndarray  # [n]
  trial_runs: np.ndarray  # [n, K]
  source: str


def _subject_rdms(
  files: SubjectFiles,
  stim_md: pd.DataFrame,
  vox_md: pd.DataFrame,
  sel: Selection,
  rois: Mapping[str, Sequence[str]],
  settings: dict,
  bar,
) -> _SubjectRdms:
  """Per ROI: voxel rows, z-scored patterns ``[n, v]`` of the selected trials, RDM upper triangle ``[P]``."""
  subject, selection, n_items = files.subject, settings["selection"], len(sel.items)
  trial_ids = sel.trials["trial_id"].to_numpy()
  averaging = None if selection == "first_exemplar" else sel.averaging_matrix()
  groups = zscore_groups(stim_md, settings["zscore"])
  sessions = sorted(set(sel.trials["session"].tolist()))
  logging.info(
    "%s: %d stimuli (%s, %d trials) from %s (sessions %s)",
    subject,
    n_items,
    selection,
    trial_ids.size,
    files.stimulus_metadata,
    sessions,
  )
  rdms, n_voxels = [], []
  for roi in rois:
    rows = select_voxels(vox_md, tuple(rois[roi]), nc_testset_min=settings["nc_testset_min"], path=files.voxel_metadata)
    # read_voxel_rows of this module, looked up now: a test that replaces things.read_voxel_rows sees every read.
    patterns = roi_patterns(
      files, rows, trial_ids, len(stim_md), len(vox_md), groups=groups, averaging=averaging, read_rows=read_voxel_rows
    )
    rdm = correlation_rdm(patterns, overwrite=True)
    del patterns
    rdms.append(rdm[np.triu_indices(n_items, k=1)])
    del rdm
    n_voxels.append(rows.size)
    logging.info("%s %s: %d voxels", subject, roi, rows.size)
    if bar is not None:
      bar.update(1)
  source = f"{subject}: {files.responses.name}, {files.stimulus_metadata.name}, {files.voxel_metadata.name}"
  return _SubjectRdms(np.stack(rdms), n_voxels, sel.run_labels(), sel.trial_run_labels(), source)


def _brain_data(parts: list[_SubjectRdms], ref: _Reference, subjects, roi_names, betas_dir, settings) -> BrainData:
  """Stack the subjects' parts (trial run labels padded with -1 to the widest)."""
  width = max(p.trial_runs.shape[1] for p in parts)
  trial_runs = [np.pad(p.trial_runs, ((0, 0), (0, width - p.trial_runs.shape[1])), constant_values=-1) for p in parts]
  return BrainData(
    trial_runs=np.stack(trial_runs).astype(np.int64),
    exemplars=ref.exemplars[0],
    exemplar_items=ref.exemplars[1],
    rdm_vectors=np.stack([p.rdms for p in parts]).astype(np.float64),
    subjects=subjects,
    rois=roi_names,
    stimuli=tuple(ref.selection.items["stimulus"]),
    concepts=tuple(ref.selection.items["concept"]),
    runs=np.stack([p.runs for p in parts]).astype(np.int64),
    n_voxels=np.asarray([p.n_voxels for p in parts], dtype=np.int64),
    source=f"THINGS-fMRI betas_csv in {pathlib.Path(betas_dir)} ({'; '.join(p.source for p in parts)})",
    preparation=_describe(settings["selection"], settings["zscore"], settings["nc_testset_min"]),
  )


def _check_arguments(subjects, rois, selection: str, zscore: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(subjects, ROI names) as tuples; ValueError for none of either or an unknown selection / zscore mode."""
  subjects, roi_names = tuple(subjects), tuple(rois)
  if not subjects or not roi_names:
    raise ValueError("load_things_fmri needs at least one subject and one ROI")
  if selection not in SELECTIONS:
    raise ValueError(f"unknown stimulus selection {selection!r}; valid: {list(SELECTIONS)}")
  if zscore not in ZSCORE_MODES:
    raise ValueError(f"unknown zscore mode {zscore!r}; valid: {list(ZSCORE_MODES)}")
  return subjects, roi_names


def _progress_bar(progress: bool, total: int):
  if not progress:
    return None
  from tqdm.auto import tqdm

  return tqdm(total=total, desc="THINGS-fMRI RDMs", unit="roi")


def load_things_fmri(
  betas_dir: str | os.PathLike,
  subjects: Sequence[str] = SUBJECTS,
  rois: Mapping[str, Sequence[str]] = ROI_DEFINITIONS,
  *,
  selection: str = "first_exemplar",
  zscore: str = "all",
  nc_testset_min: float | None = None,
  progress: bool = False,
) -> BrainData:
  """Build brain RDMs from a ``betas_csv`` folder (the study's recipe by default).

  Per subject: read both metadata files, select the stimuli (``select_trials``; the study: the first
  exemplar of every train concept, n = 720 in the release), and per ROI read only its voxel rows
  (``select_voxels``), z-score each voxel (across all trials, or within runs/sessions), keep the
  selected trial columns (by ``trial_id``), average them per item when the selection aggregates,
  and compute the correlation RDM.

  Args:
    betas_dir: folder with the files (public or reference names; see ``find_subject_files``).
    subjects: ``[S]`` subject ids.
    rois: ROI name -> mask columns whose union defines it.
    selection: one of ``SELECTIONS`` (``first_exemplar`` = the study).
    zscore: one of ``ZSCORE_MODES`` (``all`` = the study).
    nc_testset_min: None (the study: mask only) or a threshold in percent; voxels need
      ``nc_testset > nc_testset_min`` too (Brain-Score: 30).
    progress: show a tqdm progress bar over subjects × ROIs.

  Returns:
    ``BrainData`` with ``rdm_vectors [S, R, P]``; ``runs [S, n]`` is -1 for averaged items.

  Raises:
    FileNotFoundError, ThingsFormatError: missing files, malformed files, or selected stimulus lists
      that differ between subjects (the message lists the first differences).
  """
  subjects, roi_names = _check_arguments(subjects, rois, selection, zscore)
  settings = {"selection": selection, "zscore": zscore, "nc_testset_min": nc_testset_min}
  bar = _progress_bar(progress, len(subjects) * len(roi_names))
  parts, ref = [], None
  try:
    for subject in subjects:
      files = find_subject_files(betas_dir, subject)
      stim_md = read_stimulus_metadata(files.stimulus_metadata)
      vox_md = read_voxel_metadata(files.voxel_metadata)
      sel = select_trials(stim_md, selection, path=files.stimulus_metadata)
      exemplars = sel.exemplar_images()
      if ref is None:
        ref = _Reference(subject, sel, exemplars)
      _check_same_rows(ref, subject, sel, exemplars, files.stimulus_metadata, selection)
      if len(sel.items) < 3:
        raise ThingsFormatError(
          f"{files.stimulus_metadata}: selection {selection!r} gives {len(sel.items)} stimuli; an RDM needs at least 3"
        )
      parts.append(_subject_rdms(files, stim_md, vox_md, sel, rois, settings, bar))
  finally:
    if bar is not None:
      bar.close()
  return _brain_data(parts, ref, subjects, roi_names, betas_dir, settings)


def cross_run_mask(runs: np.ndarray) -> np.ndarray:
  """Pairs whose two rows share no (session, run), for every subject.

  Single-trial rows (``runs [S, n]``): keep pair (i, j) when the two trials were shown in different
  runs for every subject (the study's cross-run set). Averaged rows (``runs [S, n, K]``: the run labels
  of all trials averaged into each row, -1 padded; ``BrainData.item_runs()``): keep (i, j) only when NO
  trial of row i shared a run with ANY trial of row j, for every subject; a pair is dropped as soon as one
  of the averaged trials could carry a shared run offset. ``[S, n]`` is the case ``K = 1``.

  Args:
    runs: ``[S, n]`` run labels (``BrainData.runs``) or ``[S, n, K]`` (``BrainData.item_runs()``).

  Returns:
    ``[P]`` bool in ``np.triu_indices(n, k=1)`` order, ``P = n (n − 1) / 2``.

  Raises:
    ValueError: a row has no run label for some subject (all -1: e.g. ``[S, n]`` labels of averaged
      rows, or RDMs given as RDMs without runs).
  """
  runs = np.asarray(runs)
  if runs.ndim not in (2, 3):
    raise ValueError(f"runs must be [subjects, stimuli] or [subjects, stimuli, trials], got shape {runs.shape}")
  sets = runs[..., None] if runs.ndim == 2 else runs
  unknown = (sets < 0).all(axis=2)
  if unknown.any():
    raise ValueError(
      "cross-run pairs need the (session, run) of the trials behind every stimulus for every subject; "
      f"these data have no run label for {int(unknown.any(axis=0).sum())} of {runs.shape[1]} stimuli (rows "
      "that average several trials given without their trials' runs, e.g. BrainData.runs of selection "
      "'concept_mean'/'test_mean' instead of BrainData.item_runs(), or RDMs given as RDMs without runs). "
      "Use pair set 'all'."
    )
  labels, code = np.unique(sets, return_inverse=True)
  code = code.reshape(sets.shape)
  n_labels = labels.size
  # membership [S, n, U]: row i of subject s has a trial in run u (padding -1 excluded)
  member = np.zeros(sets.shape[:2] + (n_labels,), bool)
  s_idx, i_idx, _ = np.indices(sets.shape)
  valid = sets >= 0
  member[s_idx[valid], i_idx[valid], code[valid]] = True
  m = member.astype(np.float32)
  shared = np.einsum("snu,smu->nm", m, m) > 0  # any subject, any run in common
  i, j = np.triu_indices(runs.shape[1], k=1)
  return ~shared[i, j]
