"""Validate first: the whole config, every folder that will be written and every file that will be read, before
any expensive work.

`config(c)` checks types, ranges, uniqueness and combinations of every key a run reads (ConfigError, exit 2).
`outputs(c, workdir)` checks that the workdir and the cache folder can be written (WorkdirError).
`brain_inputs(c)` checks the brain source without reading any voxel row: the THINGS-fMRI files of every subject
exist, their headers have the columns and shapes the loader needs, the ROI mask columns exist in every subject's
VoxelMetadata, there is disk space for the prepared cache; then every stimulus image the model will see exists
and decodes. A failing check names the file, the field, what was found and what was expected.
"""

import os
import pathlib
import shutil
import tempfile
from typing import Any

import numpy as np

from brainalign import features, rsa, rules
from brainalign.data import images, prepare, rdm_sources, things
from brainalign.errors import ConfigError, MissingFileError, WorkdirError

_VARIANTS = {"fa": ("reference", "standard", "dfa"), "pc": ("reference", "standard"), "stdp": ("reference", "standard")}
_CHOICES = {
  "data.source": ("fashion_mnist_demo", "npz", "cifar10_tfds"),
  "data.subset": ("shared", "per_seed"),
  "data.normalization": ("train_set", "cifar10"),
  "model.conv_impl": ("auto", "xla", "im2col"),
  "train.epoch_driver": ("auto", "python", "turn", "scan"),
  "eval.bn_mode": features.BN_MODES,
  "eval.rdm_metric": rsa.METRICS,
  "eval.concept_features": ("mean", "first_exemplar"),
  "brain.source": ("things_fmri", "simulated", "rdms"),
  "brain.selection": things.SELECTIONS,
  "brain.zscore": things.ZSCORE_MODES,
  "brain.voxel_selection": ("mask", "reliability"),
  "brain.prepared": prepare.PREPARED_MODES,
  "brain.cache_check": prepare.CACHE_CHECKS,
  "brain.rdms_sessions": rdm_sources.SESSION_MODES,
  "brain.image_layout": ("", *images.IMAGE_LAYOUTS),
}


def _get(c: Any, key: str) -> Any:
  node = c
  for part in key.split("."):
    node = node[part]
  return node


def _is_int(v: Any) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _ints(c: Any, key: str, *, low: int, distinct: bool = True, allow_empty: bool = False) -> list[int]:
  """The value of `key` as a tuple of ints >= low (ConfigError naming the key otherwise)."""
  value = _get(c, key)
  items = list(value) if isinstance(value, (list, tuple)) else [value]
  bad = [v for v in items if not _is_int(v) or v < low]
  if bad or (not items and not allow_empty):
    raise ConfigError(
      f"config.{key}={tuple(items)!r}: expected a tuple of integers >= {low}, e.g. --config.{key}='(1,2)'"
      + (f"; {bad!r} {'is' if len(bad) == 1 else 'are'} not" if bad else "; got none")
    )
  if distinct and len(set(items)) != len(items):
    dup = sorted({v for v in items if items.count(v) > 1})
    raise ConfigError(f"config.{key}={tuple(items)}: {dup} given more than once; expected distinct values")
  return [int(v) for v in items]


def _positive_int(c: Any, key: str, low: int = 1) -> int:
  v = _get(c, key)
  if not _is_int(v) or v < low:
    raise ConfigError(f"config.{key}={v!r}: expected an integer >= {low}")
  return int(v)


def _names(c: Any, key: str, valid: tuple | None = None, allow_empty: bool = False) -> list[str]:
  items = list(_get(c, key))
  if not items and not allow_empty:
    raise ConfigError(f"config.{key} is empty; expected at least one name")
  if len(set(items)) != len(items):
    dup = sorted({v for v in items if items.count(v) > 1})
    raise ConfigError(
      f"config.{key}={tuple(items)}: {dup} given more than once; expected distinct names "
      "(a repeated tuple override is concatenated, not replaced)"
    )
  unknown = [v for v in items if valid is not None and v not in valid]
  if unknown:
    raise ConfigError(f"config.{key}: unknown {unknown}; expected names from {list(valid)}")
  return items


def _check_rules(c: Any) -> None:
  for name in _names(c, "rules", rules.names()):
    rc = c.rule_configs[name]
    variant = rc.get("variant")
    if name in _VARIANTS and variant not in _VARIANTS[name]:
      raise ConfigError(f"config.rule_configs.{name}.variant={variant!r}; expected one of {_VARIANTS[name]}")
    block = rc[variant] if isinstance(variant, str) and variant in rc else rc
    for key in ("learning_rate", "readout_learning_rate", "local_learning_rate"):
      if key in block and not float(block[key]) > 0:
        where = f"rule_configs.{name}" + (f".{variant}" if block is not rc else "")
        raise ConfigError(f"config.{where}.{key}={block[key]!r}: expected a learning rate > 0")


def _check_brain(c: Any) -> None:
  b = c.brain
  rois = _names(c, "brain.rois", allow_empty=b.source == "rdms")
  _names(c, "brain.subjects", allow_empty=b.source == "rdms")
  if b.source != "rdms":
    undefined = [r for r in rois if r not in b.roi_definitions]
    if undefined:
      raise ConfigError(
        f"config.brain.rois: {undefined} have no definition in config.brain.roi_definitions (defined: "
        f"{sorted(b.roi_definitions)})",
        hint="add e.g. roi_definitions.FFA=('lFFA', 'rFFA') in a config file",
      )


def config(c: Any) -> None:
  """ConfigError for the first key with a wrong type, value or combination (see the module docstring)."""
  _ints(c, "seeds", low=0)
  _check_rules(c)
  for key, valid in _CHOICES.items():
    if _get(c, key) not in valid:
      raise ConfigError(f"config.{key}={_get(c, key)!r}; expected one of {list(valid)}")
  for key in ("data.num_train", "data.num_test", "train.batch_size", "eval.batch_size"):
    _positive_int(c, key)
  _positive_int(c, "mesh.seeds", low=0)
  epochs = _positive_int(c, "train.num_epochs", low=0)
  _positive_int(c, "train.augment_pad", low=0)
  beyond = [m for m in _ints(c, "train.milestones", low=0) if m > epochs]
  if beyond:
    raise ConfigError(
      f"config.train.milestones: {beyond} beyond config.train.num_epochs={epochs}; expected "
      f"milestones between 0 and {epochs}"
    )
  if c.train.batch_size > c.data.num_train:
    raise ConfigError(
      f"config.train.batch_size={c.train.batch_size} exceeds config.data.num_train="
      f"{c.data.num_train}; expected at most the number of training images"
    )
  _ints(c, "eval.resolutions", low=8)
  _names(c, "eval.pair_sets", ("all", "cross_run"))
  _ints(c, "model.conv_widths", low=1, distinct=False)
  _check_brain(c)
  from brainalign.report import settings as report_settings  # the report's own checks of the stats block

  report_settings.validate(c.stats)


def _writable(folder: pathlib.Path, what: str) -> None:
  """WorkdirError unless `folder` (or the nearest existing parent, where it will be created) accepts a file."""
  folder = folder.expanduser()
  probe = folder
  while not probe.exists():
    probe = probe.parent
  if not probe.is_dir():
    raise WorkdirError(f"{what} {folder}: {probe} is a file, not a folder", hint=f"choose another {what}")
  try:
    with tempfile.NamedTemporaryFile(dir=probe, prefix=".brainalign-write-test-"):
      pass
  except OSError as e:
    raise WorkdirError(
      f"{what} {folder} cannot be written ({e.strerror}: {probe})",
      hint=f"choose a writable {what}, or fix the folder's permissions",
    ) from None


def outputs(c: Any, workdir: pathlib.Path) -> None:
  """The workdir, and the cache folder when the run will write there, can be written."""
  _writable(workdir, "--workdir")
  if c.brain.source == "simulated" or (c.brain.source == "things_fmri" and c.brain.prepared != "off"):
    _writable(pathlib.Path(c.brain.cache_dir), "config.brain.cache_dir")


def _folder(path: str, key: str) -> pathlib.Path:
  if not path:
    raise ConfigError(f"config.{key} is empty; expected a folder", hint="see README.md, 'Running on the real data'")
  p = pathlib.Path(path).expanduser()
  if not p.is_dir():
    raise MissingFileError(f"config.{key}={path!r}: the folder does not exist", hint=f"point config.{key} at it")
  return p


def _check_images(images_dir: pathlib.Path, names: list[str], layout: str) -> None:
  """Every image exists (one error listing the missing ones) and decodes (the first damaged one is named)."""
  paths = images.stimulus_paths(images_dir, names, layout)
  for path in paths:
    images.decode_images(images.read_image_files([path]), 8, [str(path)])


def _voxel_header(path: pathlib.Path, columns: set[str]) -> None:
  import pandas as pd

  try:
    header = set(pd.read_csv(path, nrows=0).columns)
  except Exception as e:
    raise things.ThingsFormatError(f"{path}: cannot read the VoxelMetadata CSV header ({e})") from None
  missing = sorted(columns - header)
  if missing:
    raise things.ThingsFormatError(
      f"{path}: VoxelMetadata lacks the column(s) {missing} that config.brain.rois / roi_definitions need; "
      "expected the release's 0/1 ROI mask columns (docs/data-formats.md §6.2)"
    )


def _responses_header(path: pathlib.Path, n_trials: int) -> None:
  import h5py

  try:
    with h5py.File(path, "r") as f:
      shape = f["ResponseData/block0_values"].shape
  except KeyError:
    raise things.ThingsFormatError(
      f"{path}: no dataset ResponseData/block0_values; expected the betas_csv release's pandas HDF5 layout"
    ) from None
  except OSError as e:
    raise things.ThingsFormatError(f"{path}: cannot open the HDF5 file (truncated or corrupt?): {e}") from None
  if len(shape) != 2 or shape[1] != n_trials:
    raise things.ThingsFormatError(
      f"{path}: ResponseData/block0_values has shape {shape}; expected [voxels, "
      f"{n_trials}] (one column per StimulusMetadata row)"
    )


def _things_images(c: Any, betas_dir: pathlib.Path) -> list[str]:
  """Checks every subject's files without reading a voxel row; returns the images the model will see."""
  settings = prepare.brain_settings(c.brain, betas_dir)
  columns = {col for cols in settings["rois"].values() for col in cols}
  if settings["nc_testset_min"] is not None:
    columns.add("nc_testset")
  mean_features = settings["selection"] == "concept_mean" and c.eval.concept_features == "mean"
  names = None
  for subject in settings["subjects"]:
    files = things.find_subject_files(betas_dir, subject)
    stim = things.read_stimulus_metadata(files.stimulus_metadata)
    _voxel_header(files.voxel_metadata, columns)
    _responses_header(files.responses, len(stim))
    sel = things.select_trials(stim, settings["selection"], path=files.stimulus_metadata)
    names = names or (list(sel.exemplar_images()[0]) if mean_features else list(sel.items["stimulus"]))
  n = len(names)
  need = len(settings["subjects"]) * len(settings["rois"]) * n * (n - 1) // 2 * 8 * 1.1
  cache = pathlib.Path(c.brain.cache_dir).expanduser()
  while not cache.exists():
    cache = cache.parent
  free = shutil.disk_usage(cache).free
  if c.brain.prepared != "off" and free < need:
    raise WorkdirError(
      f"config.brain.cache_dir {c.brain.cache_dir}: {free / 2**20:.0f} MB free, the prepared "
      f"cache needs about {need / 2**20:.0f} MB",
      hint="free disk space or choose another cache_dir",
    )
  return names


def _cached_images(c: Any, betas_dir: pathlib.Path) -> list[str] | None:
  """The model's images from a valid prepared cache (None without one); a stale or damaged cache is an error."""
  from brainalign import probe

  if c.brain.prepared == "off":
    return None
  settings = prepare.brain_settings(c.brain, betas_dir)
  path = prepare.cache_path(c.brain.cache_dir, settings)
  if not path.exists():
    return None
  brain = prepare.load_cache(path, settings, content=c.brain.cache_check == "content")
  return list(probe.model_images(brain, c.eval.concept_features)[0])


def brain_inputs(c: Any, *, use_cache: bool = True) -> None:
  """Checks the brain source and every stimulus image before any voxel row is read (see the module docstring).

  use_cache: take the stimuli from a valid prepared cache (a run); False for --mode=prepare, which rebuilds."""
  b = c.brain
  if b.source == "simulated":
    return  # written by brainalign itself (brainalign.data.demo)
  images_dir = _folder(b.images_dir, "brain.images_dir")
  layout = b.image_layout or ("flat" if b.source == "rdms" else "things")
  if b.source == "rdms":
    if not b.rdms_path:
      raise ConfigError("config.brain.rdms_path is empty; expected the RDM file (.npz, .mat or rsatoolbox)")
    brain = rdm_sources.load_rdms(
      b.rdms_path,
      stimuli_file=b.stimuli_file or None,
      subjects=tuple(b.subjects),
      rois=tuple(b.rois),
      sessions=b.rdms_sessions,
    )
    names = list(brain.stimuli)
  else:
    betas_dir = _folder(b.betas_dir, "brain.betas_dir")
    names = (_cached_images(c, betas_dir) if use_cache else None) or _things_images(c, betas_dir)
  _check_images(images_dir, names, layout)


def is_dir_empty(path: pathlib.Path) -> bool:
  """True when `path` does not exist or is an empty folder."""
  return not path.exists() or (path.is_dir() and not any(os.scandir(path)))
