"""The prepare step: read the large THINGS-fMRI files once, cache the brain RDMs in one small file.

``python main.py --mode=prepare --config=configs/paper.py --config.brain.betas_dir=…`` (or
``prepare(config)``) reads each subject's ``ResponseData.h5`` (ROI rows only) and metadata, builds the
RDMs exactly as configured (``config.brain``: subjects, ROIs and their definitions, selection, z-scoring,
voxel selection) and writes

    <config.brain.cache_dir>/prepared/brain-<key>.npz

where ``<key>`` is a hash of those settings and of the source folder. The file holds

* ``rdm_vectors [S, R, P]`` float64 (strict upper triangles, ``np.triu_indices(n, 1)`` order),
* ``subjects [S]``, ``rois [R]``, ``stimuli [n]`` (RDM row order), ``concepts [n]``,
* ``runs [S, n]`` int64 (``session * 100 + run``; -1 for averaged rows), ``n_voxels [S, R]``,
* ``trial_runs [S, n, K]`` int64 (run labels of every trial averaged into a row, -1 padded; for cross-run
  pairs of averaged rows), ``exemplars [m]`` and ``exemplar_items [m]`` (every image behind the rows and its
  row; ``concept_mean``: all exemplars of each concept, whose model features are averaged),
* ``meta``: JSON with the settings, the source description, and a manifest of every source file
  (absolute path, size in bytes, modification time in ns) taken before and checked after reading.

For the real data (720 stimuli, 3 subjects, 6 ROIs) that is 3 × 6 × 258,840 × 8 bytes ≈ 37 MB, against
≈ 43 GB of source files.

Later runs (``load_brain``, used by ``brainalign.probe.load_probe``) use the cache when it is valid:
same settings (by construction of the file name, re-checked from ``meta``) and every source file with the
recorded size and modification time. **A stale cache is refused, never silently rebuilt**: rebuilding
reads the large files again (hours on the real data), so ``load_brain`` raises ``StaleCacheError`` naming
each changed or missing file and the command that rebuilds it (``--mode=prepare`` always rebuilds).
With ``config.brain.prepared="auto"`` (default) a missing cache is built and written on first use;
``"require"`` makes a missing cache an error too; ``"off"`` never reads or writes a cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from brainalign import io, provenance
from brainalign.data import things
from brainalign.data.brain import BrainData
from brainalign.errors import CacheError, ConfigError
from brainalign.settings import BrainSettings

__all__ = [
  "CACHE_VERSION",
  "PREPARED_MODES",
  "StaleCacheError",
  "brain_settings",
  "source_files",
  "file_manifest",
  "cache_path",
  "build_brain",
  "save_cache",
  "load_cache",
  "prepare",
  "load_brain",
]

CACHE_VERSION = 1
PREPARED_MODES = ("auto", "require", "off")
CACHE_CHECKS = ("stat", "content")  # config.brain.cache_check: source files by size + mtime, or also by content


REBUILD_HINT = (
  "rebuild it with `python main.py --mode=prepare` and the same --config flags as this command (this reads the "
  "large source files again)"
)


class StaleCacheError(CacheError):
  """The prepared brain cache does not match its source files (or is missing when required)."""


def _roi_definitions(b: BrainSettings) -> dict[str, tuple[str, ...]]:
  """{ROI name: mask columns} for config.brain.rois, from config.brain.roi_definitions."""
  defs = dict(b.roi_definitions)
  unknown = [r for r in b.rois if r not in defs]
  if unknown:
    raise ConfigError(
      f"config.brain.rois: ROI(s) {unknown} have no definition in config.brain.roi_definitions "
      f"(defined: {sorted(defs)}); add e.g. roi_definitions.FFA=('lFFA', 'rFFA') in a config file"
    )
  out = {}
  for r in b.rois:
    cols = defs[r]
    cols = (cols,) if isinstance(cols, str) else tuple(str(c) for c in cols)
    if not cols:
      raise ConfigError(f"config.brain.roi_definitions.{r} is empty; expected one or more VoxelMetadata mask columns")
    out[str(r)] = cols
  return out


def brain_settings(brain_config: Any, betas_dir: str | os.PathLike) -> dict:
  """Everything that determines the brain RDMs, as a JSON-able dict (the cache key).

  Keys: ``betas_dir`` (absolute), ``subjects``, ``rois`` {name: [columns]}, ``selection``, ``zscore``,
  ``nc_testset_min`` (None = mask only), ``version``.
  """
  b = BrainSettings.of(brain_config)
  voxel_selection, selection, zscore = b.voxel_selection, b.selection, b.zscore
  if voxel_selection not in ("mask", "reliability"):
    raise ConfigError(f"config.brain.voxel_selection must be 'mask' or 'reliability', got {voxel_selection!r}")
  if selection not in things.SELECTIONS:
    raise ConfigError(f"config.brain.selection must be one of {list(things.SELECTIONS)}, got {selection!r}")
  if zscore not in things.ZSCORE_MODES:
    raise ConfigError(f"config.brain.zscore must be one of {list(things.ZSCORE_MODES)}, got {zscore!r}")
  return {
    "version": CACHE_VERSION,
    "betas_dir": str(pathlib.Path(betas_dir).expanduser().resolve()),
    "subjects": [str(s) for s in b.subjects],
    "rois": {k: list(v) for k, v in _roi_definitions(b).items()},
    "selection": selection,
    "zscore": zscore,
    "nc_testset_min": float(b.nc_testset_min) if voxel_selection == "reliability" else None,
  }


def source_files(settings: dict) -> list[pathlib.Path]:
  """The three files of every subject (``things.find_subject_files``), in subject order."""
  out = []
  for subject in settings["subjects"]:
    f = things.find_subject_files(settings["betas_dir"], subject)
    out += [f.responses.resolve(), f.stimulus_metadata.resolve(), f.voxel_metadata.resolve()]
  return out


def file_manifest(paths: Sequence[os.PathLike]) -> list[dict]:
  """``[{path, size, mtime_ns}]`` of each file (FileNotFoundError if one is missing)."""
  out = []
  for p in paths:
    st = os.stat(p)
    out.append({"path": str(p), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)})
  return out


def cache_path(cache_dir: str | os.PathLike, settings: dict) -> pathlib.Path:
  """``<cache_dir>/prepared/brain-<16 hex digits of sha256(settings)>.npz``."""
  key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
  return pathlib.Path(cache_dir).expanduser().resolve() / "prepared" / f"brain-{key}.npz"


def build_brain(settings: dict, *, progress: bool = False) -> tuple[BrainData, list[dict]]:
  """Reads the source files (the slow part) and returns the BrainData and the files' manifest.

  The manifest is taken before reading and compared after: a file that changes while it is read is an
  error (StaleCacheError), so a cache never records a state its RDMs do not come from.
  """
  files = source_files(settings)
  before = file_manifest(files)
  brain = things.load_things_fmri(
    settings["betas_dir"],
    tuple(settings["subjects"]),
    {k: tuple(v) for k, v in settings["rois"].items()},
    selection=settings["selection"],
    zscore=settings["zscore"],
    nc_testset_min=settings["nc_testset_min"],
    progress=progress,
  )
  after = file_manifest(files)
  for entry in after:  # for the opt-in content check (config.brain.cache_check="content")
    entry["sha256"] = provenance.file_digest(entry["path"])
  if [{k: v for k, v in a.items() if k != "sha256"} for a in after] != before:
    changed = [a["path"] for a, b in zip(after, before) if a != b]
    raise StaleCacheError(f"source file(s) changed while being read: {changed}; run the prepare step again")
  return brain, after


def save_cache(path: str | os.PathLike, brain: BrainData, settings: dict, manifest: list[dict]) -> None:
  """Writes the cache file atomically (see the module docstring for its content)."""
  meta = {
    "settings": settings,
    "manifest": manifest,
    "source": brain.source,
    "preparation": brain.preparation,
    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }
  with io.atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez(
        f,
        rdm_vectors=brain.rdm_vectors.astype(np.float64),
        subjects=np.asarray(brain.subjects, str),
        rois=np.asarray(brain.rois, str),
        stimuli=np.asarray(brain.stimuli, str),
        concepts=np.asarray(brain.concepts, str),
        runs=brain.runs.astype(np.int64),
        n_voxels=brain.n_voxels.astype(np.int64),
        trial_runs=brain.item_runs(),
        exemplars=np.asarray(brain.exemplar_images()[0], str),
        exemplar_items=brain.exemplar_images()[1].astype(np.int64),
        meta=np.asarray(json.dumps(meta)),
      )


def _stale_reasons(manifest: list[dict], current: list[pathlib.Path], content: bool = False) -> list[str]:
  """Why the cache's source files no longer match: by size and modification time (a file edited with its mtime
  restored is not detected), and with content=True also by the SHA-256 of each file's bytes."""
  reasons = []
  recorded = {m["path"]: m for m in manifest}
  for p in current:
    if str(p) not in recorded:
      reasons.append(f"{p}: not among the files the cache was built from")
  for m in manifest:
    p = pathlib.Path(m["path"])
    if not p.is_file():
      reasons.append(f"{p}: missing (cache built from a file of {m['size']} bytes)")
      continue
    st = p.stat()
    if st.st_size != m["size"]:
      reasons.append(f"{p}: size {st.st_size} bytes, cache built from {m['size']} bytes")
    elif st.st_mtime_ns != m["mtime_ns"]:
      reasons.append(
        f"{p}: modified {time.ctime(st.st_mtime_ns / 1e9)}, cache built from the version of "
        f"{time.ctime(m['mtime_ns'] / 1e9)}"
      )
    elif content and m.get("sha256") != provenance.file_digest(p):
      what = "content differs" if m.get("sha256") else "the cache records no content digest (older brainalign)"
      reasons.append(f"{p}: {what} (config.brain.cache_check='content')")
  return reasons


def load_cache(path: str | os.PathLike, settings: dict, *, content: bool = False) -> BrainData:
  """Reads a cache file and checks it against ``settings`` and the current source files.

  Raises:
    FileNotFoundError: no cache file.
    StaleCacheError: other settings, an unreadable file, or a source file changed/missing since; the
      message names every such file and how to rebuild.
  """
  path = pathlib.Path(path)
  rebuild = REBUILD_HINT
  if not path.exists():
    raise FileNotFoundError(path)
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
  except Exception as e:  # zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError: a damaged file
    raise StaleCacheError(
      f"{path}: the prepared brain cache is damaged ({type(e).__name__}: {e})", hint=rebuild
    ) from None
  if meta.get("settings") != settings:
    raise StaleCacheError(f"{path}: built with settings {meta.get('settings')}, expected {settings}", hint=rebuild)
  try:
    current = source_files(settings)
  except FileNotFoundError as e:
    raise StaleCacheError(f"{path}: cannot check the cache against its source files: {e}", hint=rebuild) from e
  reasons = _stale_reasons(meta["manifest"], current, content)
  if reasons:
    raise StaleCacheError(
      f"{path}: stale prepared-brain cache; its source files changed since it was built:\n  " + "\n  ".join(reasons),
      hint=rebuild,
    )
  if "exemplars" not in arrays:  # written before exemplar lists were cached
    if settings["selection"] != "first_exemplar":
      raise StaleCacheError(
        f"{path}: prepared-brain cache without the exemplar lists and trial runs that "
        f"selection {settings['selection']!r} needs (written by an older brainalign)",
        hint=rebuild,
      )
    arrays.update(
      trial_runs=arrays["runs"][..., None],
      exemplars=arrays["stimuli"],
      exemplar_items=np.arange(len(arrays["stimuli"]), dtype=np.int64),
    )
  return BrainData(
    trial_runs=arrays["trial_runs"],
    exemplars=tuple(arrays["exemplars"].tolist()),
    exemplar_items=arrays["exemplar_items"],
    rdm_vectors=arrays["rdm_vectors"],
    subjects=tuple(arrays["subjects"].tolist()),
    rois=tuple(arrays["rois"].tolist()),
    stimuli=tuple(arrays["stimuli"].tolist()),
    concepts=tuple(arrays["concepts"].tolist()),
    runs=arrays["runs"],
    n_voxels=arrays["n_voxels"],
    source=_cached_source(meta["source"], path),
    preparation=meta["preparation"],
  )


def _cached_source(source: str, path: pathlib.Path) -> str:
  return source + f" [prepared cache {path}]"


def prepare(
  brain_config: Any, betas_dir: str | os.PathLike, *, progress: bool = True
) -> tuple[pathlib.Path, BrainData]:
  """Always (re)builds the cache for ``config.brain`` from the files in ``betas_dir``; returns its path."""
  b = BrainSettings.of(brain_config)
  settings = brain_settings(b, betas_dir)
  path = cache_path(b.cache_dir, settings)
  brain, manifest = build_brain(settings, progress=progress)
  save_cache(path, brain, settings, manifest)
  logging.info(
    "Prepared brain RDMs %s -> %s (%.1f MB)", list(brain.rdm_vectors.shape), path, path.stat().st_size / 2**20
  )
  return path, brain


def load_brain(brain_config: Any, betas_dir: str | os.PathLike, *, rebuild_stale: bool = False) -> BrainData:
  """Brain RDMs for ``config.brain``: from the valid cache, else per ``config.brain.prepared``.

  ``auto``: use a valid cache; build and write it when there is none; refuse a stale one.
  ``require``: use a valid cache; refuse a missing or stale one. ``off``: read the source files.
  ``rebuild_stale=True`` (used for the small simulated demo files only) rebuilds a stale cache, with a
  warning, instead of refusing it.
  """
  b = BrainSettings.of(brain_config)
  mode = b.prepared
  if mode not in PREPARED_MODES:
    raise ConfigError(f"config.brain.prepared must be one of {list(PREPARED_MODES)}, got {mode!r}")
  settings = brain_settings(b, betas_dir)
  if mode == "off":
    return build_brain(settings)[0]
  path = cache_path(b.cache_dir, settings)
  if path.exists():
    try:
      check = b.cache_check
      if check not in CACHE_CHECKS:
        raise ConfigError(f"config.brain.cache_check={check!r}; expected one of {list(CACHE_CHECKS)}")
      brain = load_cache(path, settings, content=check == "content")
      logging.info("Brain RDMs from the prepared cache %s", path)
      return brain
    except StaleCacheError as e:
      if not rebuild_stale or mode == "require":
        raise
      logging.warning("Rebuilding the prepared cache (small simulated files): %s", e)
  elif mode == "require":
    raise StaleCacheError(
      f"no prepared-brain cache {path} for these settings (config.brain.prepared='require')",
      hint="create it with `python main.py --mode=prepare` and the same --config flags as this command",
    )
  logging.info("No prepared cache for these settings yet: reading the source files once and writing %s", path)
  brain, manifest = build_brain(settings)
  save_cache(path, brain, settings, manifest)
  return dataclasses.replace(brain, source=_cached_source(brain.source, path))  # as a later run reads it
