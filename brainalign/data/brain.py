"""The brain data every analysis reads, whatever its source: RDMs per subject and ROI over one stimulus list.

Readers (``things.load_things_fmri``, ``rdm_sources.load_rdms``, the prepared cache in ``prepare``) return a
``BrainData``; nothing here reads or writes files.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class BrainData:
  """Brain RDMs of several subjects and ROIs over one common stimulus list.

  Attributes:
    rdm_vectors: ``[S, R, P]`` float64 strict upper triangles (``np.triu_indices(n, k=1)`` order),
      ``P = n (n − 1) / 2``.
    subjects: ``[S]`` subject ids.
    rois: ``[R]`` ROI names.
    stimuli: ``[n]`` selected stimulus file names in RDM row order (identical for all subjects).
    concepts: ``[n]`` their concepts (sorted).
    runs: ``[S, n]`` int64 ``session * 100 + run`` of each selected trial, per subject; -1 where
      the row averages several trials or the run is unknown (RDMs given as RDMs).
    n_voxels: ``[S, R]`` int64 voxels per subject and ROI.
    source: human-readable origin (folder and files).
    preparation: how the RDMs were made (selection, normalisation, voxel selection), one line.
    trial_runs: ``[S, n, K]`` int64 run labels of every trial averaged into each row (-1 padded), or
      None (= ``runs[..., None]``); used by ``cross_run_mask`` for averaged rows.
    exemplars: ``[m]`` image names of every exemplar of every row (row by row), or None (= ``stimuli``).
    exemplar_items: ``[m]`` int64 row of each exemplar, or None (= ``arange(n)``).
    subject_groups: ``[S]`` the subject each RDM belongs to when a subject has several RDMs (sessions kept
      separate, ``config.brain.rdms_sessions="separate"``), or None (= ``subjects``: one RDM per subject).
  """

  rdm_vectors: np.ndarray
  subjects: tuple[str, ...]
  rois: tuple[str, ...]
  stimuli: tuple[str, ...]
  concepts: tuple[str, ...]
  runs: np.ndarray
  n_voxels: np.ndarray
  source: str
  preparation: str = ""
  trial_runs: np.ndarray | None = None
  exemplars: tuple[str, ...] | None = None
  exemplar_items: np.ndarray | None = None
  subject_groups: tuple[str, ...] | None = None

  def item_runs(self) -> np.ndarray:
    """``[S, n, K]`` run labels of the trials behind each row (``trial_runs``, else ``runs[..., None]``)."""
    return np.asarray(self.trial_runs if self.trial_runs is not None else self.runs[..., None], np.int64)

  def exemplar_images(self) -> tuple[tuple[str, ...], np.ndarray]:
    """(names ``[m]``, rows ``[m]`` int64) of every image behind the rows; one per row unless exemplars
    are recorded (``concept_mean``: all exemplars of each concept)."""
    if self.exemplars is None:
      return tuple(self.stimuli), np.arange(len(self.stimuli), dtype=np.int64)
    return tuple(self.exemplars), np.asarray(self.exemplar_items, np.int64)

  def groups(self) -> tuple[str, ...]:
    """``[S]`` the subject of each RDM (``subject_groups``, else ``subjects``)."""
    return tuple(self.subject_groups) if self.subject_groups is not None else tuple(self.subjects)

  def digest(self) -> dict:
    """Content digests of everything the analyses read (for fingerprints; paths are not part of it)."""
    from brainalign import provenance

    names, rows = self.exemplar_images()
    return {
      "rdm_vectors": provenance.array_digest(np.asarray(self.rdm_vectors)),
      "item_runs": provenance.array_digest(self.item_runs()),
      "subjects": list(self.subjects),
      "subject_groups": list(self.groups()),
      "rois": list(self.rois),
      "stimuli": list(self.stimuli),
      "exemplars": provenance.array_digest(np.asarray(names, str)),
      "exemplar_items": provenance.array_digest(rows),
      "preparation": self.preparation,
    }
