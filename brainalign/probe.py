"""The probe set: brain RDMs (real THINGS-fMRI or the simulated demo brain) and the matching stimulus images.

Both sources go through the same loaders (brainalign.data.things, brainalign.data.images); the only
difference is where the files come from, and `data` says which: "things-fmri" or "simulated".
"""
import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np
from absl import logging

from brainalign import rsa
from brainalign.data import demo, images, things

DATA_LABELS = {"things_fmri": "things-fmri", "simulated": "simulated"}


@dataclasses.dataclass(frozen=True)
class ProbeSet:
  """Brain data and stimuli for RSA.

  data: "things-fmri" or "simulated" (written into every result row).
  description: one human-readable line naming the source files.
  brain: the loaded BrainData (rdm_vectors [Subj, R, P] over all pairs).
  images: {resolution: [n, R, R, 3] float32 normalised with the training set's mean/std}.
  pair_sets: {name: (i, j) int32 index arrays [P']}.
  brain_ranks: {name: [Subj, R, P'] centred ranks of the brain RDMs on that pair set} (computed once).
  """
  data: str
  description: str
  brain: things.BrainData
  images: dict
  pair_sets: dict
  brain_ranks: dict


def resolve_source(brain_config: Any) -> tuple[str, str, str]:
  """(data label, betas_dir, images_dir) for config.brain; prepares the simulated demo data if asked."""
  source = brain_config.source
  if source not in DATA_LABELS:
    raise ValueError(f"config.brain.source must be one of {sorted(DATA_LABELS)}, got {source!r}")
  if source == "simulated":
    paths = demo.prepare_demo(brain_config.cache_dir, brain_config.simulation)
    return DATA_LABELS[source], str(paths.betas_dir), str(paths.images_dir)
  missing = [k for k in ("betas_dir", "images_dir") if not brain_config[k]]
  if missing:
    raise ValueError(f"config.brain.source='things_fmri' needs {', '.join('config.brain.' + k for k in missing)} "
                     "(the THINGS-fMRI betas_csv folder and the THINGS images folder); see README.md. For the "
                     "offline demo on simulated data use --config=configs/demo.py.")
  return DATA_LABELS[source], brain_config.betas_dir, brain_config.images_dir


def pair_set(name: str, n: int, runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """'all' = every i < j; 'cross_run' = pairs whose stimuli lie in different runs for every subject."""
  i, j = rsa.pair_indices(n)
  if name == "all":
    return i, j
  if name == "cross_run":
    keep = things.cross_run_mask(runs)
    return i[keep], j[keep]
  raise ValueError(f"Unknown pair set {name!r}; valid: 'all', 'cross_run'")


def load_probe(config: Any, *, mean: np.ndarray, std: np.ndarray) -> ProbeSet:
  """Loads brain RDMs, stimulus images at every config.eval.resolutions, pair sets and brain ranks."""
  data, betas_dir, images_dir = resolve_source(config.brain)
  unknown = [r for r in config.brain.rois if r not in things.ROI_DEFINITIONS]
  if unknown:
    raise ValueError(f"config.brain.rois: unknown ROI(s) {unknown}; known: {list(things.ROI_DEFINITIONS)}")
  rois = {r: things.ROI_DEFINITIONS[r] for r in config.brain.rois}
  brain = things.load_things_fmri(betas_dir, tuple(config.brain.subjects), rois)
  paths = images.stimulus_paths(images_dir, brain.stimuli)
  imgs = {int(res): images.normalize(images.load_images(paths, int(res)), mean, std)
          for res in config.eval.resolutions}
  n = len(brain.stimuli)
  pairs, ranks = {}, {}
  n_all = n * (n - 1) // 2
  for name in config.eval.pair_sets:
    i, j = pair_set(name, n, brain.runs)
    # brain vectors are in all-pairs triu order; the index of pair (i, j) there is a closed form
    flat = (i * n - i * (i + 1) // 2 + (j - i - 1)).astype(np.int64)
    pairs[name] = (i.astype(np.int32), j.astype(np.int32))
    ranks[name] = rsa.rank_brain(jnp.asarray(brain.rdm_vectors[..., flat], jnp.float32))
    logging.info("Pair set %s: %d of %d pairs", name, len(i), n_all)
  desc = f"{data}: fMRI {betas_dir}; stimuli {images_dir}; {n} stimuli; subjects {list(brain.subjects)}; " \
         f"ROIs {list(brain.rois)}"
  return ProbeSet(data=data, description=desc, brain=brain, images=imgs, pair_sets=pairs, brain_ranks=ranks)
