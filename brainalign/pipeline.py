"""The whole run: train every rule (seeds vmapped) -> checkpoints -> features at milestones -> RSA -> results.

Layout of a workdir:
  run_info.json                         config, data source, library versions
  checkpoints/<rule>/<epoch>/           Orbax checkpoints of the multi-seed TrainState (milestones only)
  logs/<rule>/epoch_XXXX.json           per-epoch training metrics of every seed
  features/<rule>/epoch_XXXX.npz        readout features [S, n, d] per layer and resolution (no activations)
  results/alignment.csv, training.csv, summary.csv, diagnostics.csv   tidy tables (brainalign.results)
  results/rdms/<rule>_<res>px.npz       model RDM upper triangles, when config.save_rdms
  figures/alignment_vs_epoch*.png

Every file is written atomically. A killed run restarted with the same command resumes from the latest
milestone checkpoint, recomputes only what is missing, and produces exactly the results of an
uninterrupted run (all randomness derives from the seeds; see brainalign.train).
"""

import dataclasses
import functools
import json
import pathlib
import platform
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from absl import logging
from tqdm import tqdm

from brainalign import checkpointing, features, figures, io, models, probe, results, rsa, rules, train
from brainalign.data import training_sets
from brainalign.models import READOUT_LAYERS


class SimulatedInterruption(RuntimeError):
  """Raised by `run(..., interrupt_after_epoch=k, interrupt_rule=r)`: lets tests kill a run at a known point."""


@dataclasses.dataclass
class RuleRun:
  """What training one rule leaves behind: milestone epochs with features, and per-epoch metric logs."""

  name: str
  description: str
  milestones: list


def _epoch_file(folder: pathlib.Path, epoch: int, suffix: str) -> pathlib.Path:
  return folder / f"epoch_{epoch:04d}{suffix}"


def _model_for(config: Any, rule_name: str) -> models.CNN:
  rc = config.rule_configs[rule_name]
  return models.create_model(
    config.model, conv_init=rc.conv_init, conv_bias=rc.conv_bias, pre_bn_relu=rc.pre_bn_relu
  )  # True: STDP's block order (study.md §3.1)


def _wants_diagnostics(rule_config: Any) -> bool:
  """rule_configs.<rule>.diagnostics, or .<variant>.diagnostics for rules with per-variant blocks (pc)."""
  variant = rule_config.get("variant")
  block = rule_config.get(variant) if isinstance(variant, str) else None
  return bool(rule_config.get("diagnostics", False) or (block is not None and block.get("diagnostics", False)))


def _check_finite(metrics: dict, rule: str, epoch: int, seeds) -> None:
  for k, v in metrics.items():
    bad = ~np.isfinite(np.asarray(v))
    if bad.any():
      raise FloatingPointError(
        f"rule {rule!r}, epoch {epoch}: metric {k!r} is not finite for seed(s) "
        f"{[s for s, b in zip(seeds, bad) if b]}; lower the learning rate or check the data"
      )


def train_rule(
  config: Any,
  rule_name: str,
  workdir: pathlib.Path,
  training: training_sets.TrainingSet,
  probe_set: probe.ProbeSet,
  *,
  interrupt_after_epoch: int | None = None,
  interrupt_rule: str | None = None,
) -> RuleRun:
  """Trains one rule for all seeds, checkpointing and extracting features at the milestones (resumable)."""
  seeds = list(config.seeds)
  model = _model_for(config, rule_name)
  if training.per_seed and tuple(training.seeds) != tuple(int(s) for s in seeds):
    raise ValueError(
      f"the per-seed training subsets were drawn for seeds {list(training.seeds)}, but "
      f"config.seeds is {seeds}; load the training set with the same seeds"
    )
  steps_per_epoch = training.num_train // config.train.batch_size
  if steps_per_epoch < 1:
    raise ValueError(f"train.batch_size={config.train.batch_size} exceeds the {training.num_train} training images")
  rule = rules.create(rule_name, model, config.rule_configs[rule_name], steps_per_epoch=steps_per_epoch)
  logging.info("Rule %s: %s", rule_name, rule.description)
  num_epochs = int(config.train.num_epochs)
  milestones = sorted({int(m) for m in config.train.milestones} | {0})
  if max(milestones) > num_epochs:
    raise ValueError(f"train.milestones {milestones} go beyond train.num_epochs={num_epochs}")
  if not rule.trains:
    milestones, num_epochs = [0], 0

  keys = jnp.asarray(train.seed_key_data(seeds))
  init = jax.jit(
    jax.vmap(functools.partial(train.create_train_state, model=model, rule=rule, image_shape=training.image_shape))
  )
  state = init(keys)
  manager = checkpointing.create_manager(workdir / "checkpoints" / rule_name)
  restored, state = checkpointing.restore_latest(manager, state)
  if restored is None:
    checkpointing.save(manager, 0, state)
    start = 0
  else:
    start = int(restored)
    if start > num_epochs:
      raise ValueError(f"{manager.directory} holds epoch {start} > train.num_epochs={num_epochs}; use a new workdir")
    logging.info("Rule %s: resumed from the epoch-%d checkpoint in %s", rule_name, start, manager.directory)

  images_dev = jax.device_put(training.train_images)  # [N, H, W, 3], or [S, N, H, W, 3] per seed
  labels_dev = jax.device_put(training.train_labels)
  test_acc = train.make_test_accuracy(model, mean=training.mean, std=training.std, logits_fn=rule.logits)
  extract = features.make_extractor(
    model, bn_mode=config.eval.bn_mode, batch_size=config.eval.batch_size, rule_features=rule.features
  )
  feat_dir, log_dir = workdir / "features" / rule_name, workdir / "logs" / rule_name

  def log_epoch(epoch, st, metrics):
    acc = test_acc(st, training.test_images, training.test_labels)
    io.write_json(
      {
        "epoch": epoch,
        "seeds": seeds,
        "rule_description": rule.description,
        "test_accuracy": acc.tolist(),
        **{k: np.asarray(v).tolist() for k, v in metrics.items()},
      },
      _epoch_file(log_dir, epoch, ".json"),
    )

  def save_features(epoch, st):
    arrays = {}
    for res, imgs in probe_set.images.items():
      for layer, f in extract(
        st.params, st.batch_stats, imgs, st.rule_state, segments=probe_set.segments
      ).items():  # exemplar means for concept_mean
        arrays[f"{res}px/{layer}"] = f.astype(np.float32)
    io.write_npz(_epoch_file(feat_dir, epoch, ".npz"), **arrays)

  # milestones already checkpointed but whose features were lost (killed in between): redo from checkpoint
  for m in milestones:
    if m <= start and not _epoch_file(feat_dir, m, ".npz").exists():
      st = state if m == start else checkpointing.restore_epoch(manager, m, state)
      save_features(m, st)
  if start == 0 and not _epoch_file(log_dir, 0, ".json").exists():
    log_epoch(0, state, {"loss": [np.nan] * len(seeds), "accuracy": [np.nan] * len(seeds)})

  if num_epochs > start:
    make_step = functools.partial(
      train.make_train_step,
      model,
      rule,
      batch_size=config.train.batch_size,
      steps_per_epoch=steps_per_epoch,
      mean=training.mean,
      std=training.std,
      pad=config.train.augment_pad,
      flip=config.train.augment_flip,
    )
    # the rule's costly diagnostics (angles/cosines to the true gradient) on the last step of each epoch only
    last_step = make_step(diagnose=True) if _wants_diagnostics(config.rule_configs[rule_name]) else None
    run_epoch = train.make_epoch_runner(
      make_step(),
      steps_per_epoch=steps_per_epoch,
      per_seed_data=training.per_seed,
      driver=config.train.epoch_driver,
      last_step=last_step,
    )
    bar = tqdm(
      range(start + 1, num_epochs + 1),
      desc=f"{rule_name} ({len(seeds)} seeds)",
      unit="epoch",
      initial=start,
      total=num_epochs,
      disable=None,
    )
    for epoch in bar:
      state, metrics = run_epoch(state, images_dev, labels_dev)
      _check_finite(metrics, rule_name, epoch, seeds)
      log_epoch(epoch, state, metrics)
      bar.set_postfix(loss=f"{np.mean(metrics['loss']):.3f}", acc=f"{np.mean(metrics['accuracy']):.3f}")
      if interrupt_after_epoch is not None and epoch == interrupt_after_epoch and interrupt_rule in (None, rule_name):
        manager.wait_until_finished()
        raise SimulatedInterruption(f"interrupted after epoch {epoch} of rule {rule_name!r}")
      if epoch in milestones:
        checkpointing.save(manager, epoch, state)
        save_features(epoch, state)
  manager.wait_until_finished()
  manager.close()
  return RuleRun(name=rule_name, description=rule.description, milestones=milestones)


def alignment_for_rule(config: Any, run: RuleRun, workdir: pathlib.Path, probe_set: probe.ProbeSet) -> pd.DataFrame:
  """RSA of every (seed, milestone, layer) against every (ROI, subject): one compiled call per resolution
  and pair set, on the features saved at the milestones."""
  feat_dir = workdir / "features" / run.name
  loaded = []
  for m in run.milestones:
    with np.load(_epoch_file(feat_dir, m, ".npz")) as z:
      loaded.append({k: z[k] for k in z.files})
  frames = []
  for res in probe_set.images:
    per_layer = [
      jnp.asarray(np.stack([f[f"{res}px/{layer}"] for f in loaded], axis=1))  # [S, M, n, d]
      for layer in READOUT_LAYERS
    ]
    degenerate = [layer for layer, x in zip(READOUT_LAYERS, per_layer) if bool(np.any(rsa.constant_rows(x)))]
    if degenerate:
      logging.warning(
        "Rule %s at %d px: layer(s) %s have stimuli with constant features (e.g. all-zero ReLU); "
        "their RDM entries and rho are NaN",
        run.name,
        res,
        degenerate,
      )
    for pairs_name, pairs in probe_set.pair_sets.items():
      rho = rsa.rsa_grid(per_layer, probe_set.brain_ranks[pairs_name], pairs, metric=config.eval.rdm_metric)
      frames.append(
        results.alignment_frame(
          np.asarray(jax.device_get(rho)),
          data=probe_set.data,
          rule=run.name,
          seeds=list(config.seeds),
          epochs=run.milestones,
          layers=READOUT_LAYERS,
          rois=probe_set.brain.rois,
          subjects=probe_set.brain.subjects,
          resolution=res,
          pairs=pairs_name,
          bn_mode=config.eval.bn_mode,
          n_pairs=len(pairs[0]),
        )
      )
    if config.save_rdms:
      i, j = rsa.pair_indices(len(probe_set.brain.stimuli))
      vecs = jnp.stack([rsa.rdm_vectors(x, (i, j), config.eval.rdm_metric) for x in per_layer], axis=2)
      io.write_npz(
        workdir / "results" / "rdms" / f"{run.name}_{res}px.npz",
        rdms=np.asarray(vecs, np.float32),
        seeds=np.asarray(config.seeds),
        epochs=np.asarray(run.milestones),
        layers=np.asarray(READOUT_LAYERS),
        stimuli=np.asarray(probe_set.brain.stimuli),
        metric=np.asarray(config.eval.rdm_metric),
        data=np.asarray(probe_set.data),
      )
  return pd.concat(frames, ignore_index=True)


def training_table(config: Any, run: RuleRun, workdir: pathlib.Path, *, data: str, train_data: str) -> pd.DataFrame:
  """training.csv rows of one rule from its per-epoch logs."""
  rows = []
  for path in sorted((workdir / "logs" / run.name).glob("epoch_*.json")):
    log = json.loads(path.read_text())
    for k, seed in enumerate(log["seeds"]):
      rows.append(
        {
          "data": data,
          "train_data": train_data,
          "rule": run.name,
          "seed": seed,
          "epoch": log["epoch"],
          "loss": log["loss"][k],
          "train_accuracy": log["accuracy"][k],
          "test_accuracy": log["test_accuracy"][k],
        }
      )
  return pd.DataFrame(rows, columns=list(results.TRAINING_COLUMNS))


def diagnostics_table(run: RuleRun, workdir: pathlib.Path, *, data: str) -> pd.DataFrame:
  """diagnostics.csv rows of one rule: every logged metric other than loss and accuracies, per seed and epoch
  (learning-rule diagnostics measured on the epoch's last batch, e.g. `angle_fa_vs_bp_conv2`; PC's
  `energy_stepTT`, an epoch mean)."""
  rows = []
  skip = {"epoch", "seeds", "rule_description", "loss", "accuracy", "test_accuracy"}
  for path in sorted((workdir / "logs" / run.name).glob("epoch_*.json")):
    log = json.loads(path.read_text())
    for metric in sorted(set(log) - skip):
      for k, seed in enumerate(log["seeds"]):
        rows.append(
          {
            "data": data,
            "rule": run.name,
            "seed": seed,
            "epoch": log["epoch"],
            "metric": metric,
            "value": log[metric][k],
          }
        )
  return pd.DataFrame(rows, columns=list(results.DIAGNOSTICS_COLUMNS))


def _versions() -> dict:
  import flax  # versions only
  import optax
  import orbax.checkpoint

  return {
    "python": platform.python_version(),
    "jax": jax.__version__,
    "flax": flax.__version__,
    "optax": optax.__version__,
    "orbax-checkpoint": orbax.checkpoint.__version__,
    "numpy": np.__version__,
    "backend": jax.default_backend(),
    "devices": [str(d) for d in jax.devices()],
  }


def run(
  config: Any, workdir: str, *, interrupt_after_epoch: int | None = None, interrupt_rule: str | None = None
) -> dict:
  """Runs the configured study end to end; returns {table name: DataFrame}.

  interrupt_after_epoch, interrupt_rule: for tests, raise `SimulatedInterruption` after that epoch of that
  rule (None: the first rule that trains that far), after its log and before its checkpoint."""
  workdir = pathlib.Path(workdir).expanduser().resolve()
  workdir.mkdir(parents=True, exist_ok=True)
  unknown = [r for r in config.rules if r not in rules.names()]
  if unknown:
    raise ValueError(f"config.rules: unknown rule(s) {unknown}; valid: {list(rules.names())}")
  training = training_sets.load_training_set(config.data, seeds=config.seeds)
  probe_set = probe.load_probe(config, mean=training.mean, std=training.std)
  bn_note = (
    "BN running statistics at extraction (correct)"
    if config.eval.bn_mode == "running"
    else "BN BATCH statistics at extraction: reproduces the reference implementation's defect (study.md §6.1)"
  )
  info = {
    "config": config.to_dict(),
    "data": probe_set.data,
    "data_description": probe_set.description,
    "simulated_data_warning": (
      "SIMULATED brain data (brainalign demo): not real fMRI; results show what "
      "the pipeline computes, not findings about the brain"
    )
    if probe_set.data == "simulated"
    else None,
    "train_data": training.name,
    "bn_mode": bn_note,
    "versions": _versions(),
  }
  io.write_json(info, workdir / "run_info.json")
  logging.info("Data: %s", probe_set.description)

  runs, alignment, training_rows, diagnostic_rows = [], [], [], []
  for name in config.rules:
    rr = train_rule(
      config,
      name,
      workdir,
      training,
      probe_set,
      interrupt_after_epoch=interrupt_after_epoch,
      interrupt_rule=interrupt_rule,
    )
    runs.append(rr)
    alignment.append(alignment_for_rule(config, rr, workdir, probe_set))
    training_rows.append(training_table(config, rr, workdir, data=probe_set.data, train_data=training.name))
    diagnostic_rows.append(diagnostics_table(rr, workdir, data=probe_set.data))
  tables = {
    "alignment": pd.concat(alignment, ignore_index=True),
    "training": pd.concat(training_rows, ignore_index=True),
    "diagnostics": pd.concat(diagnostic_rows, ignore_index=True),
  }
  tables["summary"] = results.summarize(tables["alignment"])
  for name, df in tables.items():
    io.write_csv(df, workdir / "results" / f"{name}.csv")
  # which variant each rule ran, and whether it reproduces a defective reference rule
  io.write_json({r.name: r.description for r in runs}, workdir / "results" / "rules.json")
  title_data = "SIMULATED brain (brainalign demo, not real fMRI)" if probe_set.data == "simulated" else "THINGS-fMRI"
  primary_res = max(probe_set.images)
  for res in probe_set.images:
    for pairs_name in probe_set.pair_sets:
      suffix = "" if (res == primary_res and pairs_name == list(probe_set.pair_sets)[0]) else f"_{res}px_{pairs_name}"
      figures.alignment_vs_epoch(
        tables["summary"],
        workdir / "figures" / f"alignment_vs_epoch{suffix}.png",
        resolution=res,
        pairs=pairs_name,
        title=f"{title_data} · {res} px · {pairs_name} pairs · {config.eval.bn_mode} BN · "
        f"mean ± SD over {len(config.seeds)} seeds",
      )
  logging.info("Results written to %s", workdir / "results")
  return tables
