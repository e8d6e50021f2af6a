"""Load THINGS-fMRI single-trial responses (``betas_csv`` release) and build the study's brain RDMs.

Files per subject (``things-format.md`` §3–§6; written for tests by ``things_writer``):

* ``sub-XX_ResponseData.h5``: pandas fixed-format store; the data are the HDF5 dataset
  ``ResponseData/block0_values`` of shape ``[n_vox, n_trials]`` (rows in ``voxel_id`` order, columns
  in ``trial_id`` order). It is read with h5py, ROI rows only: the whole table of a subject is
  ≈16.6 GB and is never loaded.
* ``sub-XX_StimulusMetadata.csv``: ``[n_trials]`` rows, ``trial_id`` = row number = column of the
  responses.
* ``sub-XX_VoxelMetadata.csv``: ``[n_vox]`` rows with 0/1 ROI mask columns.

The study's recipe (``study.md`` §7), implemented by ``load_things_fmri`` (defaults in brackets; each
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

Memory: ROI rows are read ``_CHUNK_BYTES`` at a time and z-scored in place; only the selected trial
columns of each chunk are kept, so the peak is about one chunk plus the ``[n, v]`` patterns.

The reference implementation's file names (``sub-XX_task-things_voxel-wise-responses.h5`` …) are
accepted as well (``find_subject_files``).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping, Sequence

import h5py
import numpy as np
import pandas as pd
from absl import logging

from brainalign.data.brain import BrainData
from brainalign.data.things_writer import ROI_COLUMNS, SubjectFiles, subject_file_names
from brainalign.errors import DataError, MissingFileError

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

#: Study ROI name -> VoxelMetadata mask columns whose union defines it (study.md §7.4).
ROI_DEFINITIONS: dict[str, tuple[str, ...]] = {
  "V1": ("V1",),
  "V2": ("V2",),
  "V3": ("V3",),
  "hV4": ("hV4",),
  "LOC": ("lLOC", "rLOC"),
  "IT": ("IT",),
}
SUBJECTS = ("sub-01", "sub-02", "sub-03")

_DATASET = "ResponseData/block0_values"
_STIMULUS_REQUIRED = {
  "trial_type": "string",
  "session": "integer",
  "run": "integer",
  "trial_id": "integer",
  "stimulus": "string",
}
# Bytes of voxel rows read (and z-scored in place) at a time: 8 MB = 106 voxels of 9,840 float64 trials.
_CHUNK_BYTES = 8 * 2**20

#: Stimulus selections / aggregations (``load_things_fmri(selection=…)``, ``config.brain.selection``).
SELECTIONS = ("first_exemplar", "concept_mean", "test_mean")
#: Response normalisations (``load_things_fmri(zscore=…)``, ``config.brain.zscore``).
ZSCORE_MODES = ("all", "run", "session")


class ThingsFormatError(DataError):
  """A THINGS-fMRI file does not have the expected structure or content.

  Every message names the file, the field/column and what was expected.
  """


def _abbrev(items: Sequence, limit: int = 10) -> str:
  items = list(items)
  head = ", ".join(repr(x) if isinstance(x, str) else str(x) for x in items[:limit])
  return head + (f", … ({len(items)} in all)" if len(items) > limit else "")


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
  missing = [c for c in _STIMULUS_REQUIRED if c not in df.columns]
  if missing:
    raise ThingsFormatError(
      f"{path}: StimulusMetadata lacks column(s) {missing}; expected at least "
      f"{list(_STIMULUS_REQUIRED)} (found {list(df.columns)})"
    )
  for col, kind in _STIMULUS_REQUIRED.items():
    if df[col].isna().any():
      rows = np.flatnonzero(df[col].isna().to_numpy())
      raise ThingsFormatError(f"{path}: column {col!r} has empty values in rows {_abbrev(rows)}")
    ok = (
      pd.api.types.is_integer_dtype(df[col])
      if kind == "integer"
      else pd.api.types.is_string_dtype(df[col]) or df[col].dtype == object
    )
    if not ok:
      raise ThingsFormatError(f"{path}: column {col!r} must hold {kind} values, got dtype {df[col].dtype}")
  trial_id = df["trial_id"].to_numpy()
  bad = np.flatnonzero(trial_id != np.arange(len(df)))
  if bad.size:
    i = int(bad[0])
    raise ThingsFormatError(
      f"{path}: column 'trial_id' must equal the row number 0…{len(df) - 1} (it indexes the "
      f"ResponseData columns); row {i} has trial_id {int(trial_id[i])}"
    )
  derived = df["stimulus"].astype(str).str.rsplit("_", n=1).str[0]
  if "concept" not in df.columns:
    df["concept"] = derived
  else:
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
  return df


def read_voxel_metadata(path: str | os.PathLike) -> pd.DataFrame:
  """Read ``sub-XX_VoxelMetadata.csv`` with a real CSV parser (two Glasser names contain newlines).

  Checks that ``voxel_id`` exists and equals the row number (= the ResponseData row).

  Returns:
    DataFrame ``[n_vox, 222]`` (v2) or ``[n_vox, 41]`` (v1).
  """
  df = _read_csv(path, "VoxelMetadata")
  if "voxel_id" not in df.columns:
    raise ThingsFormatError(f"{path}: VoxelMetadata lacks column 'voxel_id' (found {_abbrev(df.columns)})")
  vid = df["voxel_id"].to_numpy()
  if not pd.api.types.is_integer_dtype(df["voxel_id"]) or not np.array_equal(vid, np.arange(len(df))):
    raise ThingsFormatError(
      f"{path}: column 'voxel_id' must equal the row number 0…{len(df) - 1} "
      f"(the ResponseData row); got {_abbrev(vid, 5)}"
    )
  return df


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
      raise ThingsFormatError(f"{where}: ROI column {c!r} must hold 0/1, got {_abbrev(np.unique(values), 5)}")
    mask |= values == 1
  rows = np.flatnonzero(mask).astype(np.int64)
  if rows.size == 0:
    raise ThingsFormatError(f"{where}: ROI {'|'.join(columns)} has no voxels (all of {list(columns)} are 0)")
  return rows


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
  try:
    with h5py.File(h5_path, "r") as f:
      if _DATASET not in f:
        raise ThingsFormatError(
          f"{h5_path}: HDF5 dataset {_DATASET!r} not found (top-level nodes: {list(f.keys())}); "
          f"expected the pandas fixed-format store of the THINGS ResponseData table"
        )
      dset = f[_DATASET]
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
      out = np.empty((uniq.size, n_trials_file), dtype=np.float64)
      # Split the sorted rows into runs of consecutive indices; read each run as one slice.
      breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
      starts = np.concatenate([[0], breaks])
      ends = np.concatenate([breaks, [uniq.size]])
      for s, e in zip(starts, ends):
        if s < e:
          out[s:e] = dset[int(uniq[s]) : int(uniq[e - 1]) + 1, :]
  except OSError as e:
    raise ThingsFormatError(f"{h5_path}: cannot read the ResponseData HDF5 file (truncated or corrupt?): {e}") from e
  bad = ~np.isfinite(out)
  if bad.any():
    bad_rows = np.flatnonzero(bad.any(axis=1))
    raise ThingsFormatError(
      f"{h5_path}: non-finite (NaN/inf) responses in {_DATASET} for voxel_id(s) "
      f"{_abbrev(uniq[bad_rows].tolist())} ({int(bad.sum())} values); expected finite values"
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
      f"for {'voxel_id' if labels is not None else 'index'}(s) {_abbrev(names)}"
    )
  return (x - mean) / std


def select_first_exemplars(stimulus_metadata: pd.DataFrame, *, path: str | os.PathLike | None = None) -> pd.DataFrame:
  """The study's stimulus selection: per train concept the alphabetically first stimulus.

  Train trials only; concepts sorted in Python string order (code points); for each concept the
  minimum ``stimulus`` among its train trials (exemplar ``_01`` in the release), which must have been
  shown exactly once. Trials are matched by the ``concept`` column, never by name prefix.

  Returns:
    DataFrame ``[n_concepts]`` with columns ``trial_id, stimulus, concept, session, run`` in concept
    order (RangeIndex).
  """
  where = path if path is not None else "StimulusMetadata"
  md = stimulus_metadata
  if "concept" not in md.columns:
    md = md.assign(concept=md["stimulus"].astype(str).str.rsplit("_", n=1).str[0])
  train = md[md["trial_type"] == "train"]
  if train.empty:
    raise ThingsFormatError(f"{where}: no rows with trial_type == 'train'")
  first: dict[str, str] = {}
  for concept, stim in zip(train["concept"].astype(str), train["stimulus"].astype(str)):
    if concept not in first or stim < first[concept]:
      first[concept] = stim
  concepts = sorted(first)
  stim_col = train["stimulus"].astype(str).to_numpy()
  concept_col = train["concept"].astype(str).to_numpy()
  records = []
  for concept in concepts:
    hits = np.flatnonzero((concept_col == concept) & (stim_col == first[concept]))
    if hits.size != 1:
      raise ThingsFormatError(
        f"{where}: stimulus {first[concept]!r} (first exemplar of concept {concept!r}) appears in "
        f"{hits.size} train trials (trial_id {_abbrev(train['trial_id'].to_numpy()[hits].tolist())}); "
        f"expected exactly one"
      )
    row = train.iloc[int(hits[0])]
    records.append((int(row["trial_id"]), first[concept], concept, int(row["session"]), int(row["run"])))
  out = pd.DataFrame(records, columns=["trial_id", "stimulus", "concept", "session", "run"])
  for col in ("trial_id", "session", "run"):
    out[col] = out[col].astype(np.int64)
  return out


@dataclasses.dataclass(frozen=True)
class Selection:
  """Which trials make up each RDM row (stimulus "item").

  Attributes:
    items: DataFrame ``[n]`` in RDM row order with columns ``stimulus`` (the item's name: its own
      image, or for ``concept_mean`` the concept's first exemplar; ``exemplar_images`` lists every image
      of the item, whose model features are averaged under ``eval.concept_features="mean"``),
      ``concept``, ``n_trials`` (trials averaged), ``session`` and ``run`` (of the single trial;
      -1 when the item averages several trials).
    trials: DataFrame ``[m]`` with columns ``item`` (row of ``items``), ``trial_id``,
      ``stimulus`` (of that trial), ``session``, ``run``; sorted by item, then trial_id.
    selection: the rule's name (one of ``SELECTIONS``).
  """

  items: pd.DataFrame
  trials: pd.DataFrame
  selection: str

  def averaging_matrix(self) -> np.ndarray:
    """``[n, m]`` float64 with ``1 / n_trials`` where trial k belongs to item i (rows sum to 1)."""
    n, m = len(self.items), len(self.trials)
    a = np.zeros((n, m))
    item = self.trials["item"].to_numpy()
    a[item, np.arange(m)] = 1.0 / self.items["n_trials"].to_numpy()[item]
    return a

  def run_labels(self) -> np.ndarray:
    """``[n]`` int64 ``session * 100 + run`` of each single-trial item; -1 for averaged items."""
    ses, run = self.items["session"].to_numpy(np.int64), self.items["run"].to_numpy(np.int64)
    return np.where(ses >= 0, ses * 100 + run, -1).astype(np.int64)

  def trial_run_labels(self, width: int | None = None) -> np.ndarray:
    """``[n, K]`` int64 ``session * 100 + run`` of every trial averaged into each item, -1 padded.

    ``K = width`` (at least the largest ``n_trials``) or the largest ``n_trials``.
    """
    item = self.trials["item"].to_numpy(np.int64)
    labels = self.trials["session"].to_numpy(np.int64) * 100 + self.trials["run"].to_numpy(np.int64)
    counts = np.bincount(item, minlength=len(self.items))
    k = int(counts.max()) if width is None else int(width)
    if k < counts.max():
      raise ValueError(f"width {k} < the {int(counts.max())} trials of an item")
    order = np.argsort(item, kind="stable")
    slot = np.arange(item.size) - np.repeat(np.cumsum(counts) - counts, counts)  # position within its item
    out = np.full((len(self.items), k), -1, np.int64)
    out[item[order], slot] = labels[order]
    return out

  def exemplar_images(self) -> tuple[tuple[str, ...], np.ndarray]:
    """(names ``[m]``, items ``[m]`` int64): the distinct images shown in each item's trials, item by item
    (names sorted within an item). ``concept_mean``: every exemplar of the concept (12 in the release);
    ``first_exemplar``/``test_mean``: the item's one image (a test image's repetitions are one image)."""
    pairs = sorted(set(zip(self.trials["item"].astype(int), self.trials["stimulus"].astype(str))))
    return tuple(name for _, name in pairs), np.asarray([i for i, _ in pairs], np.int64)


def select_trials(
  stimulus_metadata: pd.DataFrame, selection: str = "first_exemplar", *, path: str | os.PathLike | None = None
) -> Selection:
  """Select (and group) the trials of one subject by a named rule.

  Rules (``SELECTIONS``; items always in concept order, Python string order):

  * ``first_exemplar`` (the study): per train concept its alphabetically first stimulus, one trial
    (``select_first_exemplars``); 720 items in the release.
  * ``concept_mean``: per train concept ALL its train trials (12 exemplars in the release), to be
    averaged; the item's ``stimulus`` (the model's image) is the concept's first exemplar.
  * ``test_mean``: per test image (``trial_type == 'test'``) all its repetitions (12 in the release),
    to be averaged; items sorted by concept, then stimulus (100 in the release).

  Returns:
    ``Selection`` (items ``[n]``, trials ``[m]``).

  Raises:
    ValueError: unknown rule. ThingsFormatError: no trials of the needed type (names the file).
  """
  where = path if path is not None else "StimulusMetadata"
  if selection not in SELECTIONS:
    raise ValueError(f"unknown stimulus selection {selection!r}; valid: {list(SELECTIONS)}")
  md = stimulus_metadata
  if "concept" not in md.columns:
    md = md.assign(concept=md["stimulus"].astype(str).str.rsplit("_", n=1).str[0])
  if selection == "first_exemplar":
    sel = select_first_exemplars(md, path=path)
    items = sel[["stimulus", "concept"]].assign(n_trials=1, session=sel["session"], run=sel["run"])
    trials = sel[["trial_id", "stimulus", "session", "run"]].assign(item=np.arange(len(sel)))
  else:
    trial_type = "train" if selection == "concept_mean" else "test"
    sub = md[md["trial_type"] == trial_type]
    if sub.empty:
      raise ThingsFormatError(f"{where}: no rows with trial_type == {trial_type!r} (needed by selection {selection!r})")
    concept = sub["concept"].astype(str).to_numpy()
    stim = sub["stimulus"].astype(str).to_numpy()
    key = concept if selection == "concept_mean" else stim
    groups: dict[str, list[int]] = {}
    for k, pos in zip(key, range(len(sub))):
      groups.setdefault(k, []).append(pos)
    if selection == "concept_mean":
      order = sorted(groups)
      shown = [min(stim[p] for p in groups[k]) for k in order]
      concepts = order
    else:
      order = sorted(groups, key=lambda k: (concept[groups[k][0]], k))
      shown, concepts = order, [concept[groups[k][0]] for k in order]
    recs = []
    for item, k in enumerate(order):
      for p in groups[k]:
        row = sub.iloc[p]
        recs.append((item, int(row["trial_id"]), str(row["stimulus"]), int(row["session"]), int(row["run"])))
    trials = pd.DataFrame(recs, columns=["item", "trial_id", "stimulus", "session", "run"])
    counts = trials.groupby("item").size().to_numpy()
    items = pd.DataFrame({"stimulus": shown, "concept": concepts, "n_trials": counts, "session": -1, "run": -1})
    single = counts == 1  # an item shown once keeps its run label
    if single.any():
      first = trials.drop_duplicates("item").set_index("item")
      items.loc[single, "session"] = first.loc[np.flatnonzero(single), "session"].to_numpy()
      items.loc[single, "run"] = first.loc[np.flatnonzero(single), "run"].to_numpy()
  trials = trials.sort_values(["item", "trial_id"], kind="stable").reset_index(drop=True)
  trials = trials[["item", "trial_id", "stimulus", "session", "run"]]
  for col in ("item", "trial_id", "session", "run"):
    trials[col] = trials[col].astype(np.int64)
  items = items.reset_index(drop=True)[["stimulus", "concept", "n_trials", "session", "run"]]
  for col in ("n_trials", "session", "run"):
    items[col] = items[col].astype(np.int64)
  return Selection(items=items, trials=trials, selection=selection)


def select_voxels(
  voxel_metadata: pd.DataFrame,
  columns: Sequence[str],
  *,
  nc_testset_min: float | None = None,
  path: str | os.PathLike | None = None,
) -> np.ndarray:
  """Voxel rows of an ROI (union of mask ``columns``), optionally only those with ``nc_testset > min``.

  ``nc_testset`` is the noise ceiling of the test set in percent (things-format.md §6.1); Brain-Score
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
        f"{_abbrev([labels[i] for i in np.flatnonzero(bad)])}"
      )
    if groups is None:
      x -= mean
      x /= std
    else:
      x[:, cols] = (part - mean) / std


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
    raise ValueError(f"correlation RDM undefined: rows {_abbrev(bad.tolist())} are constant or non-finite")
  x /= norm[:, None]
  rdm = x @ x.T
  np.subtract(1.0, rdm, out=rdm)
  rdm += rdm.T.copy()
  rdm *= 0.5
  np.fill_diagonal(rdm, 0.0)
  return rdm


def _roi_patterns(
  files: SubjectFiles,
  rows: np.ndarray,
  trial_ids: np.ndarray,
  n_trials: int,
  n_vox: int,
  *,
  groups: np.ndarray | None = None,
  averaging: np.ndarray | None = None,
) -> np.ndarray:
  """``[n, v]`` z-scored patterns of the selected trials, read ``_CHUNK_BYTES`` of rows at a time.

  ``trial_ids [m]`` columns are kept (after z-scoring over all ``n_trials`` columns, or within
  ``groups [n_trials]``); ``averaging [n, m]`` (optional) combines them into items.
  """
  n_out = trial_ids.size if averaging is None else averaging.shape[0]
  out = np.empty((n_out, rows.size), dtype=np.float64)
  step = max(1, _CHUNK_BYTES // (8 * max(n_trials, 1)))
  for start in range(0, rows.size, step):
    chunk = rows[start : start + step]
    data = read_voxel_rows(files.responses, chunk, n_trials=n_trials, n_voxels=n_vox)
    _zscore_inplace(data, groups, chunk.tolist(), str(files.responses))
    picked = data[:, trial_ids]  # [c, m]
    del data
    out[:, start : start + chunk.size] = picked.T if averaging is None else averaging @ picked.T
  return out


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
  subjects = tuple(subjects)
  roi_names = tuple(rois)
  if not subjects or not roi_names:
    raise ValueError("load_things_fmri needs at least one subject and one ROI")
  if selection not in SELECTIONS:
    raise ValueError(f"unknown stimulus selection {selection!r}; valid: {list(SELECTIONS)}")
  if zscore not in ZSCORE_MODES:
    raise ValueError(f"unknown zscore mode {zscore!r}; valid: {list(ZSCORE_MODES)}")
  bar = None
  if progress:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(subjects) * len(roi_names), desc="THINGS-fMRI RDMs", unit="roi")

  rdms, runs, n_voxels, sources, trial_runs = [], [], [], [], []
  ref_sel, ref_subject, ref_exemplars = None, None, None
  try:
    for subject in subjects:
      files = find_subject_files(betas_dir, subject)
      stim_md = read_stimulus_metadata(files.stimulus_metadata)
      vox_md = read_voxel_metadata(files.voxel_metadata)
      sel = select_trials(stim_md, selection, path=files.stimulus_metadata)
      if ref_sel is None:
        ref_sel, ref_subject = sel, subject
      elif list(sel.items["stimulus"]) != list(ref_sel.items["stimulus"]):
        a, b = list(ref_sel.items["stimulus"]), list(sel.items["stimulus"])
        diffs = [f"row {i}: {ref_subject} {x!r} vs {subject} {y!r}" for i, (x, y) in enumerate(zip(a, b)) if x != y][:5]
        if len(a) != len(b):
          diffs.append(f"{ref_subject} has {len(a)} stimuli, {subject} has {len(b)}")
        raise ThingsFormatError(
          f"{files.stimulus_metadata}: selected stimuli of {subject} differ from those of "
          f"{ref_subject}; expected identical lists. First differences: " + "; ".join(diffs)
        )
      exemplars = sel.exemplar_images()
      if ref_exemplars is None:
        ref_exemplars = exemplars
      elif exemplars[0] != ref_exemplars[0] or not np.array_equal(exemplars[1], ref_exemplars[1]):
        diffs = sorted(set(exemplars[0]) ^ set(ref_exemplars[0]))
        raise ThingsFormatError(
          f"{files.stimulus_metadata}: the images averaged into the rows ({selection!r}) differ "
          f"between {ref_subject} and {subject}; expected the same images per row for every "
          f"subject. Images in only one of them: {_abbrev(diffs)}"
        )
      n_items = len(sel.items)
      if n_items < 3:
        raise ThingsFormatError(
          f"{files.stimulus_metadata}: selection {selection!r} gives {n_items} stimuli; an RDM needs at least 3"
        )
      trial_ids = sel.trials["trial_id"].to_numpy()
      averaging = None if selection == "first_exemplar" else sel.averaging_matrix()
      groups = None
      if zscore == "run":
        groups = stim_md["session"].to_numpy(np.int64) * 100 + stim_md["run"].to_numpy(np.int64)
      elif zscore == "session":
        groups = stim_md["session"].to_numpy(np.int64)
      logging.info(
        "%s: %d stimuli (%s, %d trials) from %s (sessions %s)",
        subject,
        n_items,
        selection,
        trial_ids.size,
        files.stimulus_metadata,
        sorted(set(sel.trials["session"].tolist())),
      )
      subj_rdms, subj_nvox = [], []
      for roi in roi_names:
        rows = select_voxels(vox_md, tuple(rois[roi]), nc_testset_min=nc_testset_min, path=files.voxel_metadata)
        patterns = _roi_patterns(files, rows, trial_ids, len(stim_md), len(vox_md), groups=groups, averaging=averaging)
        rdm = correlation_rdm(patterns, overwrite=True)
        del patterns
        subj_rdms.append(rdm[np.triu_indices(n_items, k=1)])
        del rdm
        subj_nvox.append(rows.size)
        logging.info("%s %s: %d voxels", subject, roi, rows.size)
        if bar is not None:
          bar.update(1)
      rdms.append(np.stack(subj_rdms))
      n_voxels.append(subj_nvox)
      runs.append(sel.run_labels())
      trial_runs.append(sel.trial_run_labels())
      sources.append(f"{subject}: {files.responses.name}, {files.stimulus_metadata.name}, {files.voxel_metadata.name}")
  finally:
    if bar is not None:
      bar.close()
  width = max(t.shape[1] for t in trial_runs)
  trial_runs = [np.pad(t, ((0, 0), (0, width - t.shape[1])), constant_values=-1) for t in trial_runs]
  return BrainData(
    trial_runs=np.stack(trial_runs).astype(np.int64),
    exemplars=ref_exemplars[0],
    exemplar_items=ref_exemplars[1],
    rdm_vectors=np.stack(rdms).astype(np.float64),
    subjects=subjects,
    rois=roi_names,
    stimuli=tuple(ref_sel.items["stimulus"]),
    concepts=tuple(ref_sel.items["concept"]),
    runs=np.stack(runs).astype(np.int64),
    n_voxels=np.asarray(n_voxels, dtype=np.int64),
    source=f"THINGS-fMRI betas_csv in {pathlib.Path(betas_dir)} ({'; '.join(sources)})",
    preparation=_describe(selection, zscore, nc_testset_min),
  )


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
