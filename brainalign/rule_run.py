"""Training one rule for all seeds: checkpoints and features at the milestones, resumable after a kill.

`setup` builds the model and the rule from the config (cheap, no training); `train_and_extract` restores the
latest checkpoint, trains the remaining epochs (seeds vmapped, one jitted step), writes a log per epoch, and at
every milestone saves the checkpoint and the readout features. All randomness derives from the seeds
(brainalign.train), so a resumed run replays exactly the computation of an uninterrupted one.
"""

import dataclasses
import functools
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from absl import logging
from tqdm import tqdm

from brainalign import checkpointing, devices, features, io, models, rules, store, timing, train
from brainalign.data import training_sets
from brainalign.errors import ConfigError, TrainingDivergedError
from brainalign.types import LearningRule


@dataclasses.dataclass(frozen=True)
class RuleSetup:
  """A rule ready to train: its model, its (init, update) pair, and the epochs it visits."""

  name: str
  model: models.CNN
  rule: LearningRule
  steps_per_epoch: int
  num_epochs: int  # 0 for a rule that never trains
  milestones: tuple[int, ...]  # epochs with a checkpoint and features (0 always; only 0 if it never trains)
  mesh: devices.SeedMesh  # where the seeds live (brainalign.devices)
  driver: str  # the resolved epoch driver (train.resolve_driver)

  @property
  def execution(self) -> dict:
    """How this rule runs here (run_info.json): the epoch driver and the convolution implementation."""
    return {"epoch_driver": self.driver, "conv_impl": self.model.conv_impl}


def setup(config: Any, name: str, training: training_sets.TrainingSet, mesh: devices.SeedMesh) -> RuleSetup:
  """Model and rule of `config.rule_configs[name]`, its milestones and seed mesh (no arrays are created)."""
  rc = config.rule_configs[name]
  try:
    driver = train.resolve_driver(config.train.epoch_driver, mesh.size)
  except ValueError as e:
    raise ConfigError(f"config.train.epoch_driver: {e}", hint="use 'auto', or 'python' with several devices") from e
  per_call = train.seeds_per_call(driver, len(config.seeds), mesh.size)
  model = models.create_model(
    config.model, conv_init=rc.conv_init, conv_bias=rc.conv_bias, pre_bn_relu=rc.pre_bn_relu, seeds_per_call=per_call
  )
  steps_per_epoch = training.num_train // config.train.batch_size
  rule = rules.create(name, model, rc, steps_per_epoch=max(steps_per_epoch, 1))
  num_epochs = int(config.train.num_epochs)
  milestones = tuple(sorted({int(m) for m in config.train.milestones} | {0}))
  if not rule.trains:
    milestones, num_epochs = (0,), 0
  elif steps_per_epoch < 1:
    raise ConfigError(
      f"config.train.batch_size={config.train.batch_size} exceeds the {training.num_train} training images; "
      "expected a batch size of at most config.data.num_train"
    )
  elif max(milestones) > num_epochs:
    raise ConfigError(
      f"config.train.milestones {list(milestones)} go beyond config.train.num_epochs={num_epochs}; expected "
      "milestones between 0 and num_epochs"
    )
  return RuleSetup(name, model, rule, steps_per_epoch, num_epochs, milestones, mesh, driver)


def _wants_diagnostics(rule_config: Any) -> bool:
  """rule_configs.<rule>.diagnostics (FA and PC; rules without the key have none)."""
  return bool(rule_config.get("diagnostics", False))


def _check_finite(metrics: dict, rule: str, epoch: int, seeds) -> None:
  for k, v in metrics.items():
    bad = ~np.isfinite(np.asarray(v))
    if bad.any():
      raise TrainingDivergedError(
        f"rule {rule!r}, epoch {epoch}: training metric {k!r} is not finite for seed(s) "
        f"{[s for s, b in zip(seeds, bad) if b]}",
        hint=f"lower config.rule_configs.{rule}'s learning rate, or check the training data",
      )


def _restore_or_init(su: RuleSetup, seeds: list, training, manager) -> tuple[Any, int]:
  create = functools.partial(train.create_train_state, model=su.model, rule=su.rule, image_shape=training.image_shape)
  init = jax.jit(jax.vmap(create), out_shardings=su.mesh.seeds)  # every seed's state on its own device
  state = init(devices.put(train.seed_key_data(seeds), su.mesh.seeds))
  restored, state = checkpointing.restore_latest(manager, state)
  if restored is None:
    checkpointing.save(manager, 0, state)
    return state, 0
  start = int(restored)
  if start > su.num_epochs:
    raise checkpointing.CheckpointError(
      f"{manager.directory} holds epoch {start} > train.num_epochs={su.num_epochs}", hint="use a new --workdir"
    )
  logging.info("Rule %s: resumed from the epoch-%d checkpoint in %s", su.name, start, manager.directory)
  return state, start


def _epoch_runner(config: Any, su: RuleSetup, training) -> Callable:
  make_step = functools.partial(
    train.make_train_step,
    su.model,
    su.rule,
    batch_size=config.train.batch_size,
    steps_per_epoch=su.steps_per_epoch,
    mean=training.mean,
    std=training.std,
    pad=config.train.augment_pad,
    flip=config.train.augment_flip,
  )
  # the rule's costly diagnostics (angles/cosines to the true gradient) on the last step of each epoch only
  last_step = make_step(diagnose=True) if _wants_diagnostics(config.rule_configs[su.name]) else None
  return train.make_epoch_runner(
    make_step(),
    steps_per_epoch=su.steps_per_epoch,
    per_seed_data=training.per_seed,
    driver=su.driver,
    last_step=last_step,
    shardings=(su.mesh.seeds, _data_sharding(su, training)),
  )


def _data_sharding(su: RuleSetup, training) -> Any:
  """Per-seed training data split like the seeds; data shared by all seeds replicated."""
  return su.mesh.seeds if training.per_seed else su.mesh.replicated


@dataclasses.dataclass
class _Outputs:
  """Writes one rule's per-epoch logs and milestone features (fingerprints embedded) and counts the work done."""

  config: Any
  su: RuleSetup
  workdir: pathlib.Path
  training: training_sets.TrainingSet
  probe_set: Any
  fingerprints: dict
  clock: timing.Clock
  epochs_trained: int = 0
  features_extracted: int = 0

  def __post_init__(self):
    su, t = self.su, self.training
    self.test_acc = train.make_test_accuracy(
      su.model, mean=t.mean, std=t.std, logits_fn=su.rule.logits, mesh=su.mesh.mesh
    )
    self.extract = features.make_extractor(
      su.model,
      bn_mode=self.config.eval.bn_mode,
      batch_size=self.config.eval.batch_size,
      rule_features=su.rule.features,
      mesh=su.mesh.mesh,
    )

  def log_epoch(self, epoch: int, st: Any, metrics: dict) -> None:
    with self.clock.stage("test accuracy", self.su.name):
      acc = self.test_acc(st, self.training.test_images, self.training.test_labels)
    record = {
      "epoch": epoch,
      "seeds": [int(s) for s in self.config.seeds],
      "rule_description": self.su.rule.description,
      "fingerprint": self.fingerprints["train"],
      "test_accuracy": acc.tolist(),
      **{k: np.asarray(v).tolist() for k, v in metrics.items()},
    }
    if devices.is_writer():
      io.write_json(record, store.log_path(self.workdir, self.su.name, epoch))

  def save_features(self, epoch: int, st: Any) -> None:
    arrays = {}
    with self.clock.stage("features", self.su.name):
      for res, imgs in self.probe_set.images.items():  # exemplar means for concept_mean (segments)
        feats = self.extract(st.params, st.batch_stats, imgs, st.rule_state, segments=self.probe_set.segments)
        arrays.update({f"{res}px/{layer}": f.astype(np.float32) for layer, f in feats.items()})
    path = store.feature_path(self.workdir, self.su.name, epoch)
    if devices.is_writer():
      io.write_npz(path, fingerprint=np.asarray(self.fingerprints["features"]), **arrays)
    self.features_extracted += 1


def _train_epochs(config, su: RuleSetup, training, state, start: int, manager, out: _Outputs, on_epoch) -> None:
  seeds = [int(s) for s in config.seeds]
  run_epoch = _epoch_runner(config, su, training)
  data = _data_sharding(su, training)
  images_dev = devices.put(training.train_images, data)  # [N, H, W, 3], or [S, N, H, W, 3] split by seed
  labels_dev = devices.put(training.train_labels, data)
  bar = tqdm(
    range(start + 1, su.num_epochs + 1),
    desc=f"{su.name} ({len(seeds)} seeds)",
    unit="epoch",
    initial=start,
    total=su.num_epochs,
    disable=None,
  )
  for epoch in bar:
    with out.clock.stage("train", su.name):
      state, metrics = run_epoch(state, images_dev, labels_dev)
    out.epochs_trained += 1
    _check_finite(metrics, su.name, epoch, seeds)
    out.log_epoch(epoch, state, metrics)
    bar.set_postfix(loss=f"{np.mean(metrics['loss']):.3f}", acc=f"{np.mean(metrics['accuracy']):.3f}")
    if on_epoch is not None:
      manager.wait_until_finished()
      on_epoch(su.name, epoch)
    if epoch in su.milestones:
      with out.clock.stage("checkpoints", su.name):
        checkpointing.save(manager, epoch, state)
      out.save_features(epoch, state)


def train_and_extract(
  config: Any,
  su: RuleSetup,
  workdir: pathlib.Path,
  training: training_sets.TrainingSet,
  probe_set: Any,
  *,
  fingerprints: dict,
  clock: timing.Clock | None = None,
  on_epoch: Callable[[str, int], None] | None = None,
) -> dict:
  """Trains one rule (resuming from its latest checkpoint) and saves features at every milestone.

  fingerprints: {"train": ..., "features": ...} embedded in the logs and feature files.
  clock: where the stages' time is added (brainalign.timing); None = a clock of its own.
  on_epoch: called as on_epoch(rule, epoch) after each trained epoch's log and before its checkpoint (tests
  use it to interrupt a run at a known point).
  Returns {"epochs_trained": int, "features_extracted": int} (what this call computed, not what it reused).
  """
  logging.info("Rule %s: %s", su.name, su.rule.description)
  if su.rule.trains:
    logging.info("Rule %s runs with epoch driver %r and conv_impl %r", su.name, su.driver, su.model.conv_impl)
  clock = clock or timing.Clock()
  with clock.stage("init/restore", su.name):
    manager = checkpointing.create_manager(workdir / "checkpoints" / su.name)
  try:
    with clock.stage("init/restore", su.name):
      state, start = _restore_or_init(su, [int(s) for s in config.seeds], training, manager)
    out = _Outputs(config, su, workdir, training, probe_set, fingerprints, clock)
    # milestones already checkpointed but whose features were lost (killed in between): redo from checkpoint
    for m in su.milestones:
      if m <= start and not store.feature_path(workdir, su.name, m).exists():
        out.save_features(m, state if m == start else checkpointing.restore_epoch(manager, m, state))
    if start == 0 and not store.log_path(workdir, su.name, 0).exists():
      nan = [np.nan] * len(config.seeds)
      out.log_epoch(0, state, {"loss": nan, "accuracy": nan})
    if su.num_epochs > start:
      _train_epochs(config, su, training, state, start, manager, out, on_epoch)
    with clock.stage("checkpoints", su.name):
      manager.wait_until_finished()
    devices.barrier(f"trained-{su.name}")  # its logs and features are on disk for every process
    return {"epochs_trained": out.epochs_trained, "features_extracted": out.features_extracted}
  finally:  # also on errors: a manager left open makes Orbax's threads print tracebacks at exit
    manager.wait_until_finished()
    manager.close()
