"""The stages of one run and exactly the inputs each depends on (the fingerprint rule: brainalign.provenance).

`run_stages` turns a config, the loaded training set and the loaded probe into `provenance.Stage`s. Only keys
that can change a stage's numbers enter its inputs; data enter as content digests, never as paths, so moving a
data folder does not invalidate a run, and editing one image does.
"""

from typing import Any

import ml_collections
import numpy as np

from brainalign import provenance
from brainalign.data import training_sets

# config.data keys that choose the training images (their content digest is added beside them)
_DATA_KEYS = ("source", "num_train", "subset", "num_test", "subset_seed", "normalization")


def active_rule_config(rule_config: Any) -> dict:
  """The keys of a rule block the rule reads: its top-level keys and the block of its active variant only
  (for rules with one block per variant, changing another variant's block cannot change a number)."""
  rc = rule_config.to_dict() if hasattr(rule_config, "to_dict") else dict(rule_config)
  variant = rc.get("variant")
  out = {k: v for k, v in rc.items() if not isinstance(v, dict)}
  if isinstance(variant, str) and isinstance(rc.get(variant), dict):
    out[variant] = rc[variant]
  return out


def training_inputs(config: Any, training: training_sets.TrainingSet, *, trains: bool) -> dict:
  """Inputs of a train stage that come from the data: config.data's keys and content digests of the arrays.

  An untrained rule depends only on the test images (its test accuracy) and the normalisation."""
  digest = provenance.array_digest
  out = {
    "data": {k: config.data[k] for k in _DATA_KEYS},
    "test_images": digest(training.test_images),
    "test_labels": digest(training.test_labels),
    "normalization": {"mean": np.asarray(training.mean).tolist(), "std": np.asarray(training.std).tolist()},
  }
  if trains:
    out.update(train_images=digest(training.train_images), train_labels=digest(training.train_labels))
  return out


def rule_stages(
  config: Any, name: str, *, trains: bool, training: training_sets.TrainingSet, probe_set: Any, stimuli: dict
) -> tuple[provenance.Stage, provenance.Stage, provenance.Stage]:
  """(train, features, rdms) stages of one rule.

  stimuli: `stimulus_inputs(probe_set)`, computed once for all rules."""
  train_inputs = {
    "rule": name,
    "rule_config": active_rule_config(config.rule_configs[name]),
    "model": config.model.to_dict(),
    "seeds": [int(s) for s in config.seeds],
    **training_inputs(config, training, trains=trains),
  }
  if trains:
    train_inputs["train"] = config.train.to_dict()
  train = provenance.Stage(f"train-{name}", (f"checkpoints/{name}", f"logs/{name}"), train_inputs)
  ev = config.eval
  features = provenance.Stage(
    f"features-{name}",
    (f"features/{name}",),
    {
      "eval": {k: ev[k] for k in ("resolutions", "bn_mode", "batch_size", "concept_features")},
      **stimuli,
    },
    upstream=(train,),
  )
  rdms = provenance.Stage(f"rdms-{name}", (f"rdms/{name}",), {"rdm_metric": ev.rdm_metric}, upstream=(features,))
  return train, features, rdms


def stimulus_inputs(probe_set: Any) -> dict:
  """The images the model sees, in order, with each file's content digest, and the row of each image."""
  return {
    "images": list(probe_set.image_names),
    "image_files": dict(zip(probe_set.image_names, probe_set.image_digests)),
    "segments": None if probe_set.segments is None else provenance.array_digest(np.asarray(probe_set.segments)),
  }


def probe_stage(config: Any, probe_set: Any, stimuli: dict) -> provenance.Stage:
  """The probe stage: the brain data as loaded (content digest), the pair sets, the control RDMs' inputs."""
  return provenance.Stage(
    "probe",
    ("probe",),
    {
      "data": probe_set.data,
      "name": probe_set.name,
      "brain": probe_set.brain.digest(),
      "pair_sets": list(config.eval.pair_sets),
      "resolutions": [int(r) for r in config.eval.resolutions],
      "image_files": stimuli["image_files"],
    },
  )


def results_fingerprint(config: Any, stages: list[provenance.Stage]) -> str:
  """Fingerprint of the tables in results/: the rules in order and every stage they are derived from."""
  return provenance.fingerprint({"rules": list(config.rules), "stages": {s.name: s.fingerprint for s in stages}})


def config_dict(config: Any) -> dict:
  """The config as a plain dict (for run_info.json)."""
  return config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
