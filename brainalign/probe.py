"""The probe set: brain RDMs (real THINGS-fMRI, the simulated demo brain, or RDMs given as RDMs) and the
matching stimulus images.

Sources (config.brain.source), each labelled in every result row by `data`:
  "things_fmri" -> "things-fmri": the THINGS-fMRI betas_csv files (brainalign.data.things), through the
      prepare cache (brainalign.data.prepare: the large files are read once);
  "simulated" -> "simulated": the simulated demo brain, written in the same format and read the same way;
  "rdms" -> "rdms": per subject x ROI RDMs from .npz / .mat / rsatoolbox files plus a stimulus
      list (brainalign.data.rdm_sources).
"""

import dataclasses
import pathlib
from typing import Any

import jax.numpy as jnp
import numpy as np
from absl import logging

from brainalign import devices, provenance, rsa, stats
from brainalign.data import demo, images, prepare, rdm_sources, things
from brainalign.data.brain import BrainData
from brainalign.errors import ConfigError, DataError, MissingFileError
from brainalign.settings import BrainSettings

DATA_LABELS = {"things_fmri": "things-fmri", "simulated": "simulated", "rdms": "rdms"}


@dataclasses.dataclass(frozen=True)
class ProbeSet:
  """Brain data and stimuli for RSA.

  data: "things-fmri", "simulated" or "rdms" (written into every result row).
  name: the data source's own name for titles ("THINGS-fMRI", the RDM file's name, ...; `config.brain.name`).
  description: one human-readable line naming the source files.
  brain: the loaded BrainData (rdm_vectors [Subj, R, P] over all pairs).
  images: {resolution: [m, R, R, 3] float32 normalised with the training set's mean/std}; m = n (one image
    per stimulus) unless `segments` is set.
  pair_sets: {name: (i, j) int32 index arrays [P']}.
  flat: {name: int64 [P'] positions of the set's pairs in the all-pairs order}.
  brain_ranks: {name: [Subj, R, P'] centred ranks of the brain RDMs on that pair set} (computed once).
  controls: {resolution: {"pixel": [P], "luminance": [P]} float32 control RDMs of the RDM rows' images over all
    pairs}, for partial RSA.
  image_names: [m] the image file names the model sees, in order; image_digests: [m] their content digests.
  segments: None, or [m] int64 RDM row of each image when a row's model features are the mean over several
    images (selection "concept_mean" with eval.concept_features "mean": all exemplars of the concept).
  """

  data: str
  name: str
  description: str
  brain: BrainData
  images: dict
  pair_sets: dict
  flat: dict
  brain_ranks: dict
  controls: dict
  image_names: tuple
  image_digests: tuple
  segments: np.ndarray | None = None


def _require(b: BrainSettings, keys: tuple[str, ...], what: str) -> None:
  """ConfigError naming the empty config.brain keys that the chosen source needs."""
  missing = [k for k in keys if not getattr(b, k)]
  if missing:
    raise ConfigError(
      f"config.brain.source={b.source!r} needs "
      f"{', '.join('config.brain.' + k for k in missing)} ({what}); see README.md"
    )


def resolve_source(brain_config: Any) -> tuple[str, str, str]:
  """(data label, betas_dir or RDM file, images_dir) for config.brain; prepares the simulated demo data if asked."""
  b = brain_config = BrainSettings.of(brain_config)
  source = b.source
  if source not in DATA_LABELS:
    raise ConfigError(f"config.brain.source must be one of {sorted(DATA_LABELS)}, got {source!r}")
  if source == "simulated":
    if devices.is_writer():  # with several processes, process 0 writes the demo data, the others then read it
      demo.prepare_demo(brain_config.cache_dir, brain_config.simulation)
    devices.barrier("demo-data")
    paths = demo.prepare_demo(brain_config.cache_dir, brain_config.simulation)  # written: returns the folders
    return DATA_LABELS[source], str(paths.betas_dir), str(paths.images_dir)
  if source == "rdms":
    _require(
      brain_config,
      ("rdms_path", "images_dir"),
      "the RDM file and the stimulus image folder; plus config.brain.stimuli_file unless the RDM file "
      "names its stimuli",
    )
    return DATA_LABELS[source], brain_config.rdms_path, brain_config.images_dir
  _require(
    brain_config,
    ("betas_dir", "images_dir"),
    "the THINGS-fMRI betas_csv folder and the THINGS images folder; for the offline demo on simulated "
    "data use --config=configs/demo.py",
  )
  return DATA_LABELS[source], brain_config.betas_dir, brain_config.images_dir


def load_brain(brain_config: Any) -> tuple[str, BrainData, str]:
  """(data label, BrainData, images_dir) for config.brain, without loading any image."""
  brain_config = BrainSettings.of(brain_config)
  data, where, images_dir = resolve_source(brain_config)
  if brain_config.source == "rdms":
    brain = rdm_sources.load_rdms(
      where,
      stimuli_file=brain_config.stimuli_file or None,
      subjects=tuple(brain_config.subjects),
      rois=tuple(brain_config.rois),
      sessions=brain_config.rdms_sessions,
    )
  else:
    brain = prepare.load_brain(brain_config, where, rebuild_stale=brain_config.source == "simulated")
  return data, brain, images_dir


def pair_set(name: str, n: int, runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """'all' = every i < j; 'cross_run' = pairs whose stimuli lie in different runs for every subject.

  runs: [Subj, n] run label per row, or [Subj, n, K] labels of all trials averaged into each row
  (BrainData.item_runs()): an averaged pair is kept only if none of its trials shared a run
  (things.cross_run_mask). Returns (i, j) int arrays [P'].
  """
  i, j = rsa.pair_indices(n)
  if name == "all":
    return i, j
  if name == "cross_run":
    keep = things.cross_run_mask(runs)
    if not keep.any():
      raise DataError(
        f"the cross_run pair set is empty: every pair of the {n} stimuli shares a run for some "
        "subject (with averaged rows, a pair is dropped if any of its trials shared a run); use "
        "pair set 'all'"
      )
    return i[keep], j[keep]
  raise DataError(f"Unknown pair set {name!r}; valid: 'all', 'cross_run'")


def data_name(brain_config: Any) -> str:
  """The data source's own name, for figure titles and the report: `config.brain.name`, else by source."""
  brain_config = BrainSettings.of(brain_config)
  if brain_config.name:
    return str(brain_config.name)
  if brain_config.source == "simulated":
    return "SIMULATED brain (brainalign demo, not real fMRI)"
  if brain_config.source == "rdms":
    return pathlib.Path(brain_config.rdms_path).name
  return "THINGS-fMRI"


def load_probe(config: Any, *, mean: np.ndarray, std: np.ndarray) -> ProbeSet:
  """Loads brain RDMs, stimulus images at every config.eval.resolutions, pair sets, brain ranks, control RDMs."""
  data, brain, images_dir = load_brain(config.brain)
  layout = BrainSettings.of(config.brain).layout
  names, segments = model_images(brain, config.eval.concept_features)
  try:
    paths = images.stimulus_paths(images_dir, names, layout)
  except FileNotFoundError as e:
    if segments is None:
      raise
    raise MissingFileError(
      f"{e}\n(eval.concept_features='mean' needs the image of every exemplar averaged into "
      "a row; with only each concept's first exemplar use "
      "--config.eval.concept_features=first_exemplar)"
    ) from e
  blobs = images.read_image_files(paths)
  digests = tuple(provenance.bytes_digest(b) for b in blobs)
  n = len(brain.stimuli)
  row_image = [names.index(s) for s in brain.stimuli]  # the image of each RDM row (its first exemplar)
  all_pairs = rsa.pair_indices(n)
  imgs, controls = {}, {}
  for res in config.eval.resolutions:
    raw = images.decode_images(blobs, int(res), [str(p) for p in paths])
    controls[int(res)] = {
      "pixel": stats.pixel_rdm_vector(raw[row_image], all_pairs),
      "luminance": stats.luminance_rdm_vector(raw[row_image], all_pairs),
    }
    imgs[int(res)] = images.normalize(raw, mean, std)
  pairs, flat, ranks = {}, {}, {}
  n_all = n * (n - 1) // 2
  for name in config.eval.pair_sets:
    i, j = pair_set(name, n, brain.item_runs())
    pairs[name] = (i.astype(np.int32), j.astype(np.int32))
    flat[name] = rsa.flat_index(i, j, n)
    ranks[name] = rsa.rank_brain(jnp.asarray(brain.rdm_vectors[..., flat[name]], jnp.float32))
    logging.info("Pair set %s: %d of %d pairs", name, len(i), n_all)
  model_side = "" if segments is None else f" (model features: mean over {len(names)} exemplar images)"
  desc = (
    f"{data}: brain {brain.source}; {brain.preparation}; stimuli {images_dir}; {n} stimuli{model_side}; "
    f"subjects {list(brain.subjects)}; ROIs {list(brain.rois)}"
  )
  return ProbeSet(
    data=data,
    name=data_name(config.brain),
    description=desc,
    brain=brain,
    images=imgs,
    pair_sets=pairs,
    flat=flat,
    brain_ranks=ranks,
    controls=controls,
    image_names=tuple(names),
    image_digests=digests,
    segments=segments,
  )


CONCEPT_FEATURES = ("mean", "first_exemplar")


def model_images(brain: BrainData, concept_features: str) -> tuple[tuple[str, ...], np.ndarray | None]:
  """The images the model sees for the RDM rows, and the row of each (None = one image per row, in row order).

  concept_features (config.eval.concept_features) matters only when rows average several images
  (brain.selection "concept_mean"): "mean" = every exemplar image behind each row (the model features of a
  row are then their mean, the counterpart of the averaged brain responses); "first_exemplar" = the row's
  first exemplar (`brain.stimuli`) only.
  Returns (names [m], segments [m] int64 or None).
  """
  if concept_features not in CONCEPT_FEATURES:
    raise ConfigError(f"config.eval.concept_features must be one of {CONCEPT_FEATURES}, got {concept_features!r}")
  names, rows = brain.exemplar_images()
  n = len(brain.stimuli)
  if concept_features == "first_exemplar" or (len(names) == n and np.array_equal(rows, np.arange(n))):
    return tuple(brain.stimuli), None
  return names, rows


def prepare_step(config: Any) -> pathlib.Path:
  """`main.py --mode=prepare`: (re)builds the brain RDM cache of config.brain and checks the stimulus images.

  Reads the large THINGS-fMRI files once (ROI rows only) and writes <config.brain.cache_dir>/prepared/brain-*.npz
  (brainalign.data.prepare); later runs with the same config.brain use it and never read the large files.
  Also checks that every image the model will see exists (all exemplars of each concept for concept_mean with
  eval.concept_features="mean"), so a missing image fails now, not after training.

  Returns:
    The cache file's path.
  """
  from brainalign import validate

  if config.brain.source == "rdms":
    raise ConfigError("config.brain.source='rdms' needs no prepare step: RDM files are small and read directly")
  validate.config(config)
  validate.outputs(config, pathlib.Path(config.brain.cache_dir))
  validate.brain_inputs(config, use_cache=False)  # headers of every subject, every image decoded: before the betas
  data, betas_dir, _ = resolve_source(config.brain)
  path, brain = prepare.prepare(config.brain, betas_dir)
  logging.info(
    "Prepared %s: %d stimuli, subjects %s, ROIs %s, voxels %s -> %s",
    data,
    len(brain.stimuli),
    list(brain.subjects),
    list(brain.rois),
    brain.n_voxels.tolist(),
    path,
  )
  return path
