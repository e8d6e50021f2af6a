"""Write files in the THINGS-fMRI ``betas_csv`` format exactly as published.

The public single-trial release (Hebart et al. 2023, figshare+ ``betas_csv``) holds three files per
subject (see ``things-format.md`` §3–§6):

* ``sub-XX_ResponseData.h5``: a pandas "fixed"-format HDF5 store with one DataFrame under the key
  ``ResponseData``; rows = voxels, columns = ``['voxel_id', 0, 1, …, n_trials-1]``; the float data
  live in ``/ResponseData/block0_values`` with shape ``[n_vox, n_trials]``.
* ``sub-XX_StimulusMetadata.csv``: one row per trial, header
  ``trial_type,session,run,subject_id,trial_id,stimulus,concept`` (v1 release: no ``concept``).
* ``sub-XX_VoxelMetadata.csv``: one row per voxel, 222 columns (13 leading + 29 ROI masks + 180
  Glasser parcels; the v1 release has 41: no ``IT`` and no ``glasser-*``).

This module writes such files (used by the test-fixture generator and the simulated-brain demo);
``brainalign.data.things`` reads them. PyTables is needed here only (pandas' ``to_hdf``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

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

#: The 13 leading VoxelMetadata columns (things-format.md §6.1), in file order.
LEADING_COLUMNS: tuple[str, ...] = (
  "voxel_id",
  "subject_id",
  "voxel_x",
  "voxel_y",
  "voxel_z",
  "nc_singletrial",
  "nc_testset",
  "splithalf_uncorrected",
  "splithalf_corrected",
  "prf-eccentricity",
  "prf-polarangle",
  "prf-rsquared",
  "prf-size",
)

#: The 29 ROI mask columns (things-format.md §6.2), in file order. ``IT`` exists only in v2.
ROI_COLUMNS: tuple[str, ...] = (
  "V1",
  "V2",
  "V3",
  "hV4",
  "VO1",
  "VO2",
  "LO1 (prf)",
  "LO2 (prf)",
  "TO1",
  "TO2",
  "V3b",
  "V3a",
  "lEBA",
  "rEBA",
  "lFFA",
  "rFFA",
  "lOFA",
  "rOFA",
  "lSTS",
  "rSTS",
  "lPPA",
  "rPPA",
  "lRSC",
  "rRSC",
  "lTOS",
  "rTOS",
  "lLOC",
  "rLOC",
  "IT",
)

#: The ROI columns of the v1 release (no ``IT``).
V1_ROI_COLUMNS: tuple[str, ...] = tuple(c for c in ROI_COLUMNS if c != "IT")

#: All 180 Glasser HCP-MMP1 parcel columns (things-format.md §6.3), in file order; two names contain
#: an embedded newline (``'glasser-p9-\n46v'``, ``'glasser-a9-\n46v'``).
GLASSER_COLUMNS: tuple[str, ...] = (
  "glasser-V1",
  "glasser-MST",
  "glasser-V6",
  "glasser-V2",
  "glasser-V3",
  "glasser-V4",
  "glasser-V8",
  "glasser-4",
  "glasser-3b",
  "glasser-FEF",
  "glasser-PEF",
  "glasser-55b",
  "glasser-V3A",
  "glasser-RSC",
  "glasser-POS2",
  "glasser-V7",
  "glasser-IPS1",
  "glasser-FFC",
  "glasser-V3B",
  "glasser-LO1",
  "glasser-LO2",
  "glasser-PIT",
  "glasser-MT",
  "glasser-A1",
  "glasser-PSL",
  "glasser-SFL",
  "glasser-PCV",
  "glasser-STV",
  "glasser-7Pm",
  "glasser-7m",
  "glasser-POS1",
  "glasser-23d",
  "glasser-v23ab",
  "glasser-d23ab",
  "glasser-31pv",
  "glasser-5m",
  "glasser-5mv",
  "glasser-23c",
  "glasser-5L",
  "glasser-24dd",
  "glasser-24dv",
  "glasser-7AL",
  "glasser-SCEF",
  "glasser-6ma",
  "glasser-7Am",
  "glasser-7Pl",
  "glasser-7PC",
  "glasser-LIPv",
  "glasser-VIP",
  "glasser-MIP",
  "glasser-1",
  "glasser-2",
  "glasser-3a",
  "glasser-6d",
  "glasser-6mp",
  "glasser-6v",
  "glasser-p24pr",
  "glasser-33pr",
  "glasser-a24pr",
  "glasser-p32pr",
  "glasser-a24",
  "glasser-d32",
  "glasser-8BM",
  "glasser-p32",
  "glasser-10r",
  "glasser-47m",
  "glasser-8Av",
  "glasser-8Ad",
  "glasser-9m",
  "glasser-8BL",
  "glasser-9p",
  "glasser-10d",
  "glasser-8C",
  "glasser-44",
  "glasser-45",
  "glasser-47l",
  "glasser-a47r",
  "glasser-6r",
  "glasser-IFJa",
  "glasser-IFJp",
  "glasser-IFSp",
  "glasser-IFSa",
  "glasser-p9-\n46v",
  "glasser-46",
  "glasser-a9-\n46v",
  "glasser-9-46d",
  "glasser-9a",
  "glasser-10v",
  "glasser-a10p",
  "glasser-10pp",
  "glasser-11l",
  "glasser-13l",
  "glasser-OFC",
  "glasser-47s",
  "glasser-LIPd",
  "glasser-6a",
  "glasser-i6-8",
  "glasser-s6-8",
  "glasser-43",
  "glasser-OP4",
  "glasser-OP1",
  "glasser-OP2-3",
  "glasser-52",
  "glasser-RI",
  "glasser-PFcm",
  "glasser-PoI2",
  "glasser-TA2",
  "glasser-FOP4",
  "glasser-MI",
  "glasser-Pir",
  "glasser-AVI",
  "glasser-AAIC",
  "glasser-FOP1",
  "glasser-FOP3",
  "glasser-FOP2",
  "glasser-PFt",
  "glasser-AIP",
  "glasser-EC",
  "glasser-PreS",
  "glasser-H",
  "glasser-ProS",
  "glasser-PeEc",
  "glasser-STGa",
  "glasser-PBelt",
  "glasser-A5",
  "glasser-PHA1",
  "glasser-PHA3",
  "glasser-STSda",
  "glasser-STSdp",
  "glasser-STSvp",
  "glasser-TGd",
  "glasser-TE1a",
  "glasser-TE1p",
  "glasser-TE2a",
  "glasser-TF",
  "glasser-TE2p",
  "glasser-PHT",
  "glasser-PH",
  "glasser-TPOJ1",
  "glasser-TPOJ2",
  "glasser-TPOJ3",
  "glasser-DVT",
  "glasser-PGp",
  "glasser-IP2",
  "glasser-IP1",
  "glasser-IP0",
  "glasser-PFop",
  "glasser-PF",
  "glasser-PFm",
  "glasser-PGi",
  "glasser-PGs",
  "glasser-V6A",
  "glasser-VMV1",
  "glasser-VMV3",
  "glasser-PHA2",
  "glasser-V4t",
  "glasser-FST",
  "glasser-V3CD",
  "glasser-LO3",
  "glasser-VMV2",
  "glasser-31pd",
  "glasser-31a",
  "glasser-VVC",
  "glasser-25",
  "glasser-s32",
  "glasser-pOFC",
  "glasser-PoI1",
  "glasser-Ig",
  "glasser-FOP5",
  "glasser-p10p",
  "glasser-p47r",
  "glasser-TGv",
  "glasser-MBelt",
  "glasser-LBelt",
  "glasser-A4",
  "glasser-STSva",
  "glasser-TE1m",
  "glasser-PI",
  "glasser-a32pr",
  "glasser-p24",
)

#: StimulusMetadata header of the v2 release (v1: the same without ``concept``).
STIMULUS_COLUMNS: tuple[str, ...] = (
  "trial_type",
  "session",
  "run",
  "subject_id",
  "trial_id",
  "stimulus",
  "concept",
)

# Glasser parcels whose union the official notebook and brain-score use as IT (things-format.md §6.2);
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
_RELEASES = ("v1", "v2")


def _check_release(release: str) -> None:
  if release not in _RELEASES:
    raise ValueError(f"release must be one of {_RELEASES}, got {release!r}")


def default_stimulus_name(concept: str, exemplar: int) -> str:
  """THINGS image file name ``'<concept>_<NN><letter>.jpg'`` of one exemplar of a concept.

  The letter mimics the image-source suffixes of the real files: ``'b'`` for exemplar 1, ``'n'`` for
  even exemplar numbers and ``'s'`` for the other odd ones, so all three letters occur. Train images
  use exemplar numbers 1–12, test images 13 and above (e.g. ``candelabra_14n.jpg``).
  """
  exemplar = int(exemplar)
  if not 1 <= exemplar <= 99:
    raise ValueError(f"exemplar number must be in 1..99 (two digits), got {exemplar}")
  if exemplar == 1:
    letter = "b"
  elif exemplar % 2 == 0:
    letter = "n"
  else:
    letter = "s"
  return f"{concept}_{exemplar:02d}{letter}.jpg"


def make_design(
  concepts: Sequence[str],
  *,
  subject_id: int,
  n_sessions: int,
  n_runs: int,
  exemplar_for_session: Sequence[int],
  test_concepts: Sequence[str],
  order_seed: int,
  stimulus_name: Callable[[str, int], str] = default_stimulus_name,
  release: str = "v2",
  order_key: str = "exemplar",
) -> pd.DataFrame:
  """StimulusMetadata rows (one per trial) of one subject, in presentation order.

  Args:
    concepts: the ``C`` train concepts (THINGS uniqueIDs); ``C % n_runs == 0``.
    subject_id: value of the ``subject_id`` column.
    n_sessions: number of sessions ``S``.
    n_runs: runs per session ``R``.
    exemplar_for_session: ``[S]`` exemplar number (1–12, all different) shown in each session.
    test_concepts: the ``T`` test concepts (a subset of ``concepts``); test concept ``t`` (0-based) has
      ONE test image, exemplar ``13 + t % 13`` (the release's test exemplars span 13–25, so names stay
      two-digit for the real 100 test concepts), shown once per session.
    order_seed: seed of the presentation order (see ``order_key``).
    stimulus_name: ``(concept, exemplar) -> file name``.
    release: ``'v2'`` (header ``trial_type,session,run,subject_id,trial_id,stimulus,concept``) or
      ``'v1'`` (the same without ``concept``).
    order_key: what the per-session order is keyed on. The order of a session is
      ``numpy.random.default_rng((order_seed, key))``'s permutation of the concepts, where ``key`` is
      the session's exemplar number (``'exemplar'``, default) or the session number (``'session'``).
      With ``'exemplar'`` two subjects with the same ``order_seed`` present e.g. all ``_01`` images in
      the same order and runs even when ``_01`` falls in different sessions for them, which is what
      the real sub-01/sub-02 do (it gives the study's 81.2 % cross-run pairs, things-format.md §8.6).

  Returns:
    DataFrame with ``S * (C + T)`` rows sorted by session, then run, in presentation order;
    ``trial_id = 0 … N-1`` in row order. Each session shows every train concept once, spread evenly
    over its runs (``C / R`` per run); test trials go to the runs round-robin (test ``t`` in run
    ``t % R + 1``) at random positions between train trials (never first or last in a run when a
    run has at least two train trials).
  """
  _check_release(release)
  if order_key not in ("exemplar", "session"):
    raise ValueError(f"order_key must be 'exemplar' or 'session', got {order_key!r}")
  concepts = [str(c) for c in concepts]
  test_concepts = [str(c) for c in test_concepts]
  n, n_sessions, n_runs = len(concepts), int(n_sessions), int(n_runs)
  if n == 0:
    raise ValueError("make_design needs at least one train concept")
  if len(set(concepts)) != n:
    raise ValueError("train concepts must be unique")
  if n_sessions < 1 or n_runs < 1:
    raise ValueError(f"n_sessions and n_runs must be >= 1, got {n_sessions}, {n_runs}")
  if n % n_runs:
    raise ValueError(f"{n} train concepts cannot be spread evenly over {n_runs} runs")
  exemplars = [int(e) for e in exemplar_for_session]
  if len(exemplars) != n_sessions:
    raise ValueError(f"exemplar_for_session has {len(exemplars)} entries, expected one per session ({n_sessions})")
  if len(set(exemplars)) != n_sessions or not all(1 <= e <= 12 for e in exemplars):
    raise ValueError(f"exemplar_for_session must hold distinct numbers in 1..12, got {exemplars}")
  if len(set(test_concepts)) != len(test_concepts):
    raise ValueError("test concepts must be unique")
  unknown = [c for c in test_concepts if c not in set(concepts)]
  if unknown:
    raise ValueError(f"test concepts must be train concepts too; not among them: {unknown}")
  test_stimuli = [stimulus_name(c, 13 + t % 13) for t, c in enumerate(test_concepts)]

  per_run = n // n_runs
  records = []
  for session in range(1, n_sessions + 1):
    exemplar = exemplars[session - 1]
    key = exemplar if order_key == "exemplar" else session
    rng = np.random.default_rng((int(order_seed), key))
    perm = rng.permutation(n)
    for r in range(n_runs):
      tests_here = [t for t in range(len(test_concepts)) if t % n_runs == r]
      # Gap g = insert before the g-th train trial of the run; 1..per_run-1 keeps tests inside.
      if per_run > 1:
        gaps = rng.integers(1, per_run, size=len(tests_here))
      else:
        gaps = np.zeros(len(tests_here), dtype=np.int64)
      order = np.argsort(gaps, kind="stable")
      tests_sorted = [(int(gaps[k]), tests_here[k]) for k in order]
      trials = []
      for pos, ci in enumerate(perm[r * per_run : (r + 1) * per_run]):
        while tests_sorted and tests_sorted[0][0] == pos:
          t = tests_sorted.pop(0)[1]
          trials.append(("test", test_stimuli[t], test_concepts[t]))
        trials.append(("train", stimulus_name(concepts[ci], exemplar), concepts[ci]))
      trials.extend(("test", test_stimuli[t], test_concepts[t]) for _, t in tests_sorted)
      for trial_type, stim, concept in trials:
        records.append((trial_type, session, r + 1, int(subject_id), stim, concept))

  df = pd.DataFrame(records, columns=["trial_type", "session", "run", "subject_id", "stimulus", "concept"])
  df.insert(4, "trial_id", np.arange(len(df), dtype=np.int64))
  for col in ("session", "run", "subject_id", "trial_id"):
    df[col] = df[col].astype(np.int64)
  train_stimuli = df.loc[df["trial_type"] == "train", "stimulus"]
  if train_stimuli.duplicated().any() or set(train_stimuli) & set(test_stimuli):
    raise ValueError(
      "stimulus_name gives clashing file names: every train image must be shown once "
      "and no test image may also be a train image"
    )
  if release == "v1":
    df = df.drop(columns="concept")
  return df


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
  _check_release(release)
  roi_cols = ROI_COLUMNS if release == "v2" else V1_ROI_COLUMNS
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

  rng = np.random.default_rng(seed)
  flat = np.sort(rng.choice(grid, size=n, replace=False))
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

  roi_of_voxel = np.full(n, "", dtype=object)
  start = 0
  masks = {name: np.zeros(n, dtype=np.int64) for name in roi_cols}
  for name, size in sizes.items():
    masks[name][start : start + size] = 1
    roi_of_voxel[start : start + size] = name
    start += size
  columns.update(masks)

  if release == "v2":
    parcel = rng.integers(-1, len(GLASSER_COLUMNS), size=n)  # -1: no parcel
    it_parcels = np.array([GLASSER_COLUMNS.index(p) for p in _IT_GLASSER])
    parcel = np.where(roi_of_voxel == "IT", rng.choice(it_parcels, size=n), parcel)
    for roi, glasser in _ROI_TO_GLASSER.items():
      parcel = np.where(roi_of_voxel == roi, GLASSER_COLUMNS.index(glasser), parcel)
    for k, name in enumerate(GLASSER_COLUMNS):
      columns[name] = (parcel == k).astype(np.int64)
  return pd.DataFrame(columns)


@dataclasses.dataclass(frozen=True)
class SubjectFiles:
  """The three betas_csv files of one subject."""

  subject: str
  responses: pathlib.Path
  stimulus_metadata: pathlib.Path
  voxel_metadata: pathlib.Path


_NAME_SETS = {
  "public": ("{s}_ResponseData.h5", "{s}_StimulusMetadata.csv", "{s}_VoxelMetadata.csv"),
  "reference": (
    "{s}_task-things_voxel-wise-responses.h5",
    "{s}_task-things_stimulus-metadata.csv",
    "{s}_task-things_voxel-metadata.csv",
  ),
}


def subject_file_names(subject: str, name_set: str = "public") -> tuple[str, str, str]:
  """``(responses, stimulus_metadata, voxel_metadata)`` file names of one subject.

  ``name_set='public'``: the figshare release (``sub-01_ResponseData.h5``,
  ``sub-01_StimulusMetadata.csv``, ``sub-01_VoxelMetadata.csv``); ``'reference'``: the names the
  study's reference implementation reads (``sub-01_task-things_voxel-wise-responses.h5``,
  ``sub-01_task-things_stimulus-metadata.csv``, ``sub-01_task-things_voxel-metadata.csv``).
  """
  if name_set not in _NAME_SETS:
    raise ValueError(f"name_set must be one of {list(_NAME_SETS)}, got {name_set!r}")
  r, s, v = _NAME_SETS[name_set]
  return r.format(s=subject), s.format(s=subject), v.format(s=subject)


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
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  resp_name, stim_name, vox_name = subject_file_names(subject, name_set)
  files = SubjectFiles(subject, out / resp_name, out / stim_name, out / vox_name)

  for frame, path in ((stimulus_metadata, files.stimulus_metadata), (voxel_metadata, files.voxel_metadata)):
    with _atomic_target(path) as tmp:
      frame.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")

  df = pd.DataFrame(responses, copy=False)
  df.insert(0, "voxel_id", np.arange(n_vox, dtype=np.int64))
  with _atomic_target(files.responses) as tmp:
    with warnings.catch_warnings():
      # The mixed column index ['voxel_id', 0, 1, …] is pickled, as in the release.
      warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
      df.to_hdf(tmp, key="ResponseData", mode="w")
  return files
