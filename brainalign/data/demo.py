"""The offline demo's probe data: Fashion-MNIST stimuli in the THINGS image layout and a simulated brain.

`prepare_demo` writes, once per setting, into a cache folder:
  <cache>/things_images/object_images/<concept>/<concept>_01b.jpg   n stimuli (n/10 per class), 32x32 RGB JPEG
  <cache>/betas_csv/sub-0{1,2,3}_{ResponseData.h5,StimulusMetadata.csv,VoxelMetadata.csv}
      a complete THINGS-format fMRI data set simulated from the ground-truth model of
      brainalign/data/simulate.py (NOT real brain data; see betas_csv/SIMULATED.md)
and a `COMPLETE` marker written last, so an interrupted preparation is redone. The pipeline then reads both
through the same loaders as the real THINGS data.

Pseudo-concepts are named `<class><k:02d>` (e.g. `ankle_boot07`, `t-shirt41`): one stimulus image each.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
from typing import Any

import numpy as np
from absl import logging
from PIL import Image

from brainalign import io
from brainalign.data import simulate, training_sets
from brainalign.data.things_writer import default_stimulus_name
from brainalign.errors import ConfigError, DataError

DEMO_VERSION = 1


@dataclasses.dataclass(frozen=True)
class DemoPaths:
  """Where the demo's stimulus images and simulated fMRI files live."""

  images_dir: pathlib.Path
  betas_dir: pathlib.Path


def demo_stimuli(n_stimuli: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """The first n/10 bundled stimulus images of each class.

  Returns:
    images [n, 32, 32] uint8 (padded), labels [n] int, concepts [n] pseudo-concept names in class order.
  """
  if n_stimuli % 10:
    raise DataError(f"demo n_stimuli must be a multiple of 10 (one share per class), got {n_stimuli}")
  bundle = training_sets.load_demo_bundle()
  images, labels = bundle["stimulus_images"], bundle["stimulus_labels"]
  per_class = n_stimuli // 10
  picks = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
  if len(picks) != n_stimuli:
    raise DataError(f"the bundle has only {len(labels) // 10} stimuli per class; asked for {per_class}")
  concepts = [f"{training_sets.FASHION_MNIST_CLASSES[labels[i]]}{k % per_class:02d}" for k, i in enumerate(picks)]
  padded = np.pad(images[picks], ((0, 0), (2, 2), (2, 2)))
  return padded, labels[picks].astype(np.int64), concepts


def simulation_config(sim: Any) -> simulate.SimulationConfig:
  """config.brain.simulation (minus n_stimuli) -> simulate.SimulationConfig; unknown keys are an error."""
  fields = {f.name for f in dataclasses.fields(simulate.SimulationConfig)}
  values = {k: v for k, v in dict(sim).items() if k != "n_stimuli"}
  unknown = sorted(set(values) - fields)
  if unknown:
    raise ConfigError(f"config.brain.simulation has unknown keys {unknown}; valid: {sorted(fields)}")
  values = {
    k: (tuple(tuple(x) if isinstance(x, (list, tuple)) else x for x in v) if isinstance(v, (list, tuple)) else v)
    for k, v in values.items()
  }
  return simulate.SimulationConfig(**values)


def prepare_demo(cache_dir: str | os.PathLike, sim: Any) -> DemoPaths:
  """Writes (once) the demo stimuli and the simulated THINGS-format fMRI data; returns their folders.

  Args:
    cache_dir: parent folder; the data go into a subfolder named by a hash of the settings.
    sim: config.brain.simulation (n_stimuli plus simulate.SimulationConfig fields).
  """
  n = int(sim["n_stimuli"])
  sim_config = simulation_config(sim)
  with open(training_sets.DEMO_BUNDLE, "rb") as f:
    bundle_hash = hashlib.sha256(f.read()).hexdigest()[:12]
  settings = {
    "demo_version": DEMO_VERSION,
    "n_stimuli": n,
    "bundle": bundle_hash,
    "simulation": dataclasses.asdict(sim_config),
  }
  tag = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
  root = pathlib.Path(cache_dir).expanduser().resolve() / f"demo-{tag}"
  paths = DemoPaths(images_dir=root / "things_images", betas_dir=root / "betas_csv")
  if (root / "COMPLETE").exists():
    return paths
  if root.exists():
    logging.info("Removing incomplete demo data in %s", root)
    shutil.rmtree(root)
  logging.info("Preparing the demo data (stimuli + SIMULATED brain) in %s", root)
  images, labels, concepts = demo_stimuli(n)
  for img, concept in zip(images, concepts):  # host-side file writing, once
    path = paths.images_dir / "object_images" / concept / default_stimulus_name(concept, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(path) as tmp:
      Image.fromarray(np.repeat(img[..., None], 3, -1)).save(tmp, format="JPEG", quality=100, subsampling=0)
  betas = simulate.simulate_things_fmri(
    images.astype(np.float32) / 255.0, labels, concepts, root, sim_config, stimulus_name=default_stimulus_name
  )
  if pathlib.Path(betas) != paths.betas_dir:
    raise RuntimeError(f"simulate wrote to {betas}, expected {paths.betas_dir}")
  io.write_json(settings, root / "settings.json")
  (root / "COMPLETE").write_text("ok\n")
  return paths
