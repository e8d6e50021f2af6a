"""Brain data given as precomputed RDMs (per subject × ROI), for any data set: ``config.brain.source="rdms"``.

The RDMs enter the same pipeline as the THINGS-fMRI files (``brainalign.probe``): ``load_rdms`` returns a
``things.BrainData`` whose ``rdm_vectors [S, R, P]`` are strict upper triangles in
``np.triu_indices(n, k=1)`` order (the order of ``scipy.spatial.distance.pdist`` / ``squareform``).
The row order of every RDM is the order of the stimulus list; images are found by those names under
``config.brain.images_dir`` (``images.stimulus_paths``; ``image_layout="flat"``: ``images_dir/<name>``).

Formats (chosen by the file's suffix):

* ``.npz`` (``np.load``, no pickles): ``rdms`` ``[S, R, n, n]`` square or ``[S, R, P]`` condensed;
  ``subjects [S]`` and ``rois [R]`` (strings); optional ``stimuli [n]`` (strings) and ``runs [S, n]``
  (int, e.g. ``session * 100 + run``; enables cross-run pairs).
* ``.mat`` (``scipy.io.loadmat``), the classic 92-image format (docs/data-formats.md §11): a struct array
  ``RDMs`` of any shape with fields ``RDM`` (``n × n``, or a condensed vector of length ``P``) and
  ``name`` (``'ROI | SUBJECT | Session: k'``: ``' | '``-separated; the first part is the ROI, the second
  the subject, the rest e.g. the session). Entries with the same ROI and subject (several sessions)
  are averaged element-wise (``sessions="average"``) or kept as separate subjects named
  ``'SUBJECT | rest'`` (``sessions="separate"``; ``BrainData.subject_groups`` then names each RDM's subject, so
  analyses pool the sessions per subject). A name without ``|`` is a ROI of subject ``'all'``.
* rsatoolbox's saved ``RDMs`` (``.hdf5``/``.h5``/``.pkl``, read with ``rsatoolbox.rdm.load_rdm``;
  optional, only if rsatoolbox is importable): ``dissimilarities [n_rdm, P]``; the subject and ROI of
  each RDM come from its ``rdm_descriptors`` (keys ``subject_key``, ``roi_key``); the stimulus names may
  come from ``pattern_descriptors[stimulus_key]``.

The stimulus order is a text file with one file name per line (``config.brain.stimuli_file``; blank lines
and lines starting with ``#`` ignored), required unless the file carries the names itself. Every RDM is
checked: finite, symmetric, zero diagonal (within 1e-6 relative), size matching the stimulus list.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np

from brainalign.data.brain import BrainData
from brainalign.errors import DataError, MissingFileError

__all__ = ["RdmFormatError", "read_stimulus_list", "load_rdms", "SESSION_MODES"]

SESSION_MODES = ("average", "separate")


class RdmFormatError(DataError):
  """An RDM file does not have the expected structure; the message names the file and field."""


def read_stimulus_list(path: str | os.PathLike) -> tuple[str, ...]:
  """File names, one per line, in RDM row order (blank lines and '#' comments skipped).

  Raises:
    FileNotFoundError; RdmFormatError on an empty list or duplicate names (listed).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise MissingFileError(
      f"stimulus list {path} does not exist (expected one image file name per line, in RDM row order)"
    )
  names = tuple(
    line.strip()
    for line in path.read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.strip().startswith("#")
  )
  if not names:
    raise RdmFormatError(f"{path}: stimulus list is empty; expected one image file name per line")
  seen, dup = set(), []
  for n in names:
    if n in seen:
      dup.append(n)
    seen.add(n)
  if dup:
    raise RdmFormatError(f"{path}: stimulus names must be unique; repeated: {sorted(set(dup))[:10]}")
  return names


def _n_from_condensed(p: int, where: str) -> int:
  n = int(round((1 + np.sqrt(1 + 8 * p)) / 2))
  if n * (n - 1) // 2 != p:
    raise RdmFormatError(f"{where}: a condensed RDM of length {p} is not n(n-1)/2 for any n")
  return n


def _to_vector(rdm: np.ndarray, where: str) -> np.ndarray:
  """Square ``[n, n]`` (checked) or condensed ``[P]`` -> ``[P]`` float64 upper triangle."""
  x = np.asarray(rdm, dtype=np.float64)
  if x.ndim == 2 and x.shape[0] == 1 or x.ndim == 2 and x.shape[1] == 1:
    x = x.ravel()
  if x.ndim == 1:
    _n_from_condensed(x.size, where)
    v = x
  elif x.ndim == 2 and x.shape[0] == x.shape[1]:
    if not np.all(np.isfinite(x)):
      bad = np.argwhere(~np.isfinite(x))[:5].tolist()
      raise RdmFormatError(f"{where}: RDM has non-finite entries, e.g. at {bad}; expected finite dissimilarities")
    scale = max(float(np.abs(x).max()), 1e-300)
    asym = float(np.abs(x - x.T).max())
    if asym > 1e-6 * scale:
      raise RdmFormatError(
        f"{where}: RDM is not symmetric (max |d_ij - d_ji| = {asym:.3g}); expected a symmetric dissimilarity matrix"
      )
    diag = float(np.abs(np.diag(x)).max())
    if diag > 1e-6 * scale:
      raise RdmFormatError(f"{where}: RDM diagonal is not zero (max |d_ii| = {diag:.3g}); expected d_ii = 0")
    v = x[np.triu_indices(x.shape[0], k=1)]
  else:
    raise RdmFormatError(f"{where}: RDM must be square [n, n] or condensed [n(n-1)/2], got shape {x.shape}")
  if not np.all(np.isfinite(v)):
    raise RdmFormatError(
      f"{where}: RDM has {int((~np.isfinite(v)).sum())} non-finite entries; expected finite dissimilarities"
    )
  return v


def _load_npz(path: pathlib.Path):
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
  except ValueError as e:
    raise RdmFormatError(f"{path}: cannot read the .npz without pickles ({e}); store strings as unicode arrays") from e
  missing = [k for k in ("rdms", "subjects", "rois") if k not in arrays]
  if missing:
    raise RdmFormatError(
      f"{path}: missing array(s) {missing}; expected rdms [S, R, n, n] or [S, R, P], "
      f"subjects [S], rois [R] (optional stimuli [n], runs [S, n]); found {sorted(arrays)}"
    )
  rdms, subjects, rois = arrays["rdms"], [str(s) for s in arrays["subjects"]], [str(r) for r in arrays["rois"]]
  if rdms.ndim not in (3, 4) or rdms.shape[:2] != (len(subjects), len(rois)):
    raise RdmFormatError(
      f"{path}: 'rdms' has shape {rdms.shape}; expected [S={len(subjects)}, R={len(rois)}, n, n] "
      f"or [S, R, P] to match 'subjects' and 'rois'"
    )
  entries = {
    (subjects[s], rois[r]): _to_vector(rdms[s, r], f"{path}: rdms[{s}, {r}] ({subjects[s]}, {rois[r]})")
    for s in range(len(subjects))
    for r in range(len(rois))
  }
  stimuli = tuple(str(x) for x in arrays["stimuli"]) if "stimuli" in arrays else None
  runs = None
  if "runs" in arrays:
    runs = {subjects[s]: np.asarray(arrays["runs"][s], np.int64) for s in range(len(subjects))}
    if arrays["runs"].shape[0] != len(subjects):
      raise RdmFormatError(f"{path}: 'runs' has shape {arrays['runs'].shape}; expected [S={len(subjects)}, n]")
  return entries, subjects, rois, stimuli, runs


def _load_mat(path: pathlib.Path, sessions: str):
  import scipy.io

  try:
    mat = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
  except (ValueError, NotImplementedError, OSError) as e:
    raise RdmFormatError(
      f"{path}: cannot read as a MATLAB .mat file with scipy.io.loadmat ({e}); MATLAB v7.3 "
      "files are HDF5 and not supported, save with -v7"
    ) from e
  if "RDMs" not in mat:
    raise RdmFormatError(
      f"{path}: no variable 'RDMs'; expected a struct array RDMs with fields RDM and name "
      f"(the 92-image format); variables: {sorted(k for k in mat if not k.startswith('__'))}"
    )
  st = mat["RDMs"]
  if st.dtype.names is None or not {"RDM", "name"} <= set(st.dtype.names):
    raise RdmFormatError(
      f"{path}: 'RDMs' must be a struct array with fields 'RDM' and 'name', got fields {st.dtype.names}"
    )
  groups: dict[tuple[str, str], list[np.ndarray]] = {}
  subject_group: dict[str, str] = {}
  subjects, rois = [], []
  for k, entry in enumerate(st.ravel(order="F")):  # MATLAB's linear (column-major) order
    name_field = np.asarray(entry["name"]).ravel()
    name = str(name_field[0]) if name_field.size else ""
    parts = [p.strip() for p in name.split("|")]
    if not parts[0]:
      raise RdmFormatError(f"{path}: RDMs({k + 1}).name is empty; expected 'ROI | SUBJECT | …'")
    roi = parts[0]
    subject = parts[1] if len(parts) > 1 and parts[1] else "all"
    group = subject
    if sessions == "separate" and len(parts) > 2:
      subject = " | ".join([subject, *parts[2:]])
    subject_group[subject] = group
    vec = _to_vector(entry["RDM"], f"{path}: RDMs({k + 1}).RDM (name {name!r})")
    groups.setdefault((subject, roi), []).append(vec)
    if subject not in subjects:
      subjects.append(subject)
    if roi not in rois:
      rois.append(roi)
  entries = {}
  for key, vecs in groups.items():
    if len({v.size for v in vecs}) != 1:
      raise RdmFormatError(f"{path}: RDMs of {key} have different sizes {[v.size for v in vecs]}")
    if sessions == "separate" and len(vecs) > 1:
      raise RdmFormatError(f"{path}: {len(vecs)} RDMs share the name of {key}; cannot keep them separate")
    entries[key] = np.mean(vecs, axis=0)
  return entries, subjects, rois, None, None, subject_group


def _load_rsatoolbox(path: pathlib.Path, subject_key: str, roi_key: str, stimulus_key: str):
  try:
    from rsatoolbox.rdm import load_rdm
  except ImportError as e:
    raise RdmFormatError(
      f"{path}: reading rsatoolbox RDM files needs the optional package rsatoolbox "
      "(pip install rsatoolbox); or convert them to .npz"
    ) from e
  try:
    rdms = load_rdm(str(path))
  except Exception as e:  # rsatoolbox raises many kinds
    raise RdmFormatError(f"{path}: rsatoolbox.rdm.load_rdm cannot read it ({type(e).__name__}: {e})") from e
  desc = rdms.rdm_descriptors
  for key in (subject_key, roi_key):
    if key not in desc:
      raise RdmFormatError(
        f"{path}: rsatoolbox rdm_descriptors lack {key!r} (needed for subject/ROI); found {sorted(desc)}"
      )
  entries, subjects, rois = {}, [], []
  vectors = np.asarray(rdms.get_vectors(), np.float64)
  for k in range(rdms.n_rdm):
    subject, roi = str(desc[subject_key][k]), str(desc[roi_key][k])
    if (subject, roi) in entries:
      raise RdmFormatError(f"{path}: two RDMs with {subject_key}={subject!r}, {roi_key}={roi!r}")
    entries[(subject, roi)] = _to_vector(vectors[k], f"{path}: RDM {k} ({subject}, {roi})")
    subjects += [subject] if subject not in subjects else []
    rois += [roi] if roi not in rois else []
  stimuli = None
  if stimulus_key in rdms.pattern_descriptors:
    stimuli = tuple(str(s) for s in rdms.pattern_descriptors[stimulus_key])
  return entries, subjects, rois, stimuli, None


def _pick(requested: Sequence[str], available: list[str], what: str, path) -> list[str]:
  requested = [str(x) for x in requested]
  if not requested:
    return available
  missing = [x for x in requested if x not in available]
  if missing:
    raise RdmFormatError(
      f"{path}: {what}(s) {missing} not in the file; available: {available} "
      f"(set config.brain.{what}s to a subset, or () for all)"
    )
  return requested


def _read_file(path: pathlib.Path, suffix: str, sessions: str, subject_key: str, roi_key: str, stimulus_key: str):
  """(entries, subjects, rois, stimuli or None, runs or None, subject groups) of the file, by its type."""
  subject_group: dict[str, str] = {}
  if suffix == ".npz":
    entries, subs, rs, stimuli, runs = _load_npz(path)
  elif suffix == ".mat":
    entries, subs, rs, stimuli, runs, subject_group = _load_mat(path, sessions)
  elif suffix in (".hdf5", ".h5", ".pkl"):
    entries, subs, rs, stimuli, runs = _load_rsatoolbox(path, subject_key, roi_key, stimulus_key)
  else:
    raise RdmFormatError(
      f"{path}: unknown RDM file type {suffix!r}; expected .npz, .mat (92-image format) or rsatoolbox .hdf5/.h5/.pkl"
    )
  return entries, subs, rs, stimuli, runs, subject_group


def _stimulus_order(path: pathlib.Path, stimuli, stimuli_file) -> tuple[str, ...] | list[str]:
  """The row order: ``stimuli_file``'s names (which must equal the file's own, if it has them) or the file's."""
  if stimuli_file:
    listed = read_stimulus_list(stimuli_file)
    if stimuli is not None and tuple(stimuli) != listed:
      diffs = [f"row {i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(stimuli, listed)) if a != b][:5]
      raise RdmFormatError(
        f"{path}: its stimulus names differ from {stimuli_file} ({len(stimuli)} vs {len(listed)} "
        f"names; first differences: {diffs})"
      )
    stimuli = listed
  if stimuli is None:
    raise RdmFormatError(
      f"{path}: no stimulus names in the file; give the row order as a text file, one image file "
      "name per line (config.brain.stimuli_file)"
    )
  return stimuli


def _stack(path: pathlib.Path, entries: dict, subs: list[str], rs: list[str], n: int) -> np.ndarray:
  """``[S, R, P]`` float64 of the chosen subjects and ROIs; each RDM must have ``P = n (n - 1) / 2`` entries."""
  p = n * (n - 1) // 2
  out = np.empty((len(subs), len(rs), p), np.float64)
  for s, subject in enumerate(subs):
    for r, roi in enumerate(rs):
      if (subject, roi) not in entries:
        raise RdmFormatError(f"{path}: no RDM for subject {subject!r}, ROI {roi!r}")
      v = entries[(subject, roi)]
      if v.size != p:
        raise RdmFormatError(
          f"{path}: RDM of ({subject}, {roi}) has {_n_from_condensed(v.size, str(path))} rows, "
          f"but the stimulus list has {n} names; they must match"
        )
      out[s, r] = v
  return out


def _run_labels(path: pathlib.Path, runs, subs: list[str], n: int) -> np.ndarray:
  """``[S, n]`` int64 run labels of the chosen subjects (the file's, when it has them), else -1."""
  run_arr = np.full((len(subs), n), -1, np.int64)
  if runs is not None:
    for s, subject in enumerate(subs):
      if runs[subject].shape != (n,):
        raise RdmFormatError(f"{path}: runs of {subject} have shape {runs[subject].shape}; expected ({n},)")
      run_arr[s] = runs[subject]
  return run_arr


def load_rdms(
  path: str | os.PathLike,
  *,
  stimuli_file: str | os.PathLike | None = None,
  subjects: Sequence[str] = (),
  rois: Sequence[str] = (),
  sessions: str = "average",
  subject_key: str = "subject",
  roi_key: str = "roi",
  stimulus_key: str = "stimulus",
) -> BrainData:
  """Read per-subject × ROI RDMs from ``path`` (.npz, .mat, or rsatoolbox .hdf5/.h5/.pkl).

  Args:
    path: the RDM file.
    stimuli_file: text file of stimulus file names in row order; required unless the file has them.
      When both exist they must agree.
    subjects, rois: which to keep and in which order; empty = all, in file order.
    sessions: .mat only: ``"average"`` or ``"separate"`` (see the module docstring).
    subject_key, roi_key, stimulus_key: rsatoolbox descriptor names.

  Returns:
    ``BrainData`` with ``rdm_vectors [S, R, P]`` float64, ``runs [S, n]`` (-1 = unknown unless the
    .npz has ``runs``), ``n_voxels [S, R]`` = -1 (unknown).

  Raises:
    FileNotFoundError, RdmFormatError: naming the file, the field and what was expected.
  """
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise MissingFileError(f"RDM file {path} does not exist (config.brain.rdms_path)")
  if sessions not in SESSION_MODES:
    raise ValueError(f"sessions must be one of {SESSION_MODES}, got {sessions!r}")
  suffix = path.suffix.lower()
  entries, subs, rs, stimuli, runs, subject_group = _read_file(
    path, suffix, sessions, subject_key, roi_key, stimulus_key
  )
  stimuli = _stimulus_order(path, stimuli, stimuli_file)
  subs = _pick(subjects, subs, "subject", path)
  rs = _pick(rois, rs, "roi", path)
  n = len(stimuli)
  out = _stack(path, entries, subs, rs, n)
  run_arr = _run_labels(path, runs, subs, n)
  groups = tuple(subject_group.get(s, s) for s in subs)
  return BrainData(
    subject_groups=groups if groups != tuple(subs) else None,
    rdm_vectors=out,
    subjects=tuple(subs),
    rois=tuple(rs),
    stimuli=tuple(stimuli),
    concepts=tuple(pathlib.PurePosixPath(x).stem for x in stimuli),
    runs=run_arr,
    n_voxels=np.full((len(subs), len(rs)), -1, np.int64),
    source=f"RDMs from {path}" + (f", stimulus order {stimuli_file}" if stimuli_file else ""),
    preparation=f"given as RDMs ({suffix[1:]})" + (f"; sessions {sessions}" if suffix == ".mat" else ""),
  )
