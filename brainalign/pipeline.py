"""The whole run: train every rule (seeds vmapped) -> checkpoints -> features -> model RDMs -> RSA -> results.

The workdir's layout is described in brainalign.store. Before any work the command's inputs are compared with
what the workdir holds (brainalign.provenance, brainalign.stages): a workdir made with other settings is
refused with a message naming every change, unless `overwrite=True`, which discards exactly the stale stages;
stages whose inputs are unchanged are reused. A killed run restarted with the same command resumes from the
latest milestone checkpoint, recomputes only what is missing, and produces exactly the results of an
uninterrupted run (all randomness derives from the seeds; see brainalign.train).
"""

import json
import pathlib
import platform
import shutil
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import pandas as pd
from absl import logging

from brainalign import devices, figures, io, probe, provenance, results, rsa, rule_run, stages, store, timing, validate
from brainalign.data import training_sets
from brainalign.models import READOUT_LAYERS


def _rule_rdms(
  config: Any, su: rule_run.RuleSetup, workdir: pathlib.Path, probe_set: probe.ProbeSet, fingerprint: str
) -> dict[int, np.ndarray]:
  """{res: model RDMs [S, M, L, P] over all pairs} of one rule: read from rdms/<rule>/ when stored with this
  fingerprint, else built from the saved features (one compiled call per resolution) and stored."""
  out, loaded = {}, None
  for res in probe_set.images:
    path = store.rdm_path(workdir, su.name, res)
    if store.stored_fingerprint(path) == fingerprint:
      out[res] = store.read_rdms(path)["vectors"]
      continue
    if loaded is None:
      loaded = []
      for m in su.milestones:
        z = store.read_features(store.feature_path(workdir, su.name, m))
        loaded.append(z)
    per_layer = [np.stack([f[f"{res}px/{layer}"] for f in loaded], axis=1) for layer in READOUT_LAYERS]  # [S, M, n, d]
    degenerate = [layer for layer, x in zip(READOUT_LAYERS, per_layer) if bool(np.any(rsa.constant_rows(x)))]
    if degenerate:
      logging.warning(
        "Rule %s at %d px: layer(s) %s have stimuli with constant features (e.g. all-zero ReLU); "
        "their RDM entries and rho are NaN",
        su.name,
        res,
        degenerate,
      )
    placed = [devices.put(x, su.mesh.seeds) for x in per_layer]  # each device builds its own seeds' RDMs
    vectors = np.asarray(devices.gather(rsa.model_rdms(placed, config.eval.rdm_metric, mesh=su.mesh.mesh)), np.float32)
    if devices.is_writer():
      labels = dict(
        seeds=config.seeds,
        epochs=su.milestones,
        layers=READOUT_LAYERS,
        stimuli=probe_set.brain.stimuli,
        metric=config.eval.rdm_metric,
        data=probe_set.data,
      )
      store.write_rdms(path, vectors, fingerprint=fingerprint, **{k: np.asarray(v) for k, v in labels.items()})
    out[res] = vectors
  return out


def alignment_for_rule(config: Any, su: rule_run.RuleSetup, rdms: dict, probe_set: probe.ProbeSet) -> pd.DataFrame:
  """RSA of every (seed, milestone, layer) against every (ROI, subject): one compiled call per resolution and
  pair set, on the stored model RDMs."""
  frames = []
  mesh = su.mesh
  for res, vectors in rdms.items():
    dev = devices.put(vectors, mesh.seeds)  # model rows split by seed, the brain side replicated
    for pairs_name, flat in probe_set.flat.items():
      ranks = devices.put(np.asarray(probe_set.brain_ranks[pairs_name]), mesh.replicated)
      rho = rsa.spearman_at(dev, ranks, np.asarray(flat), mesh=mesh.mesh)
      frames.append(
        results.alignment_frame(
          np.asarray(devices.gather(rho)),
          data=probe_set.data,
          rule=su.name,
          seeds=list(config.seeds),
          epochs=su.milestones,
          layers=READOUT_LAYERS,
          rois=probe_set.brain.rois,
          subjects=probe_set.brain.subjects,
          resolution=res,
          pairs=pairs_name,
          bn_mode=config.eval.bn_mode,
          n_pairs=len(flat),
        )
      )
  return pd.concat(frames, ignore_index=True)


def _logs(workdir: pathlib.Path, rule: str) -> list[dict]:
  return [json.loads(p.read_text()) for p in sorted((workdir / "logs" / rule).glob("epoch_*.json"))]


def training_table(rule: str, workdir: pathlib.Path, *, data: str, train_data: str) -> pd.DataFrame:
  """training.csv rows of one rule from its per-epoch logs."""
  rows = []
  for log in _logs(workdir, rule):
    for k, seed in enumerate(log["seeds"]):
      rows.append(
        {
          "data": data,
          "train_data": train_data,
          "rule": rule,
          "seed": seed,
          "epoch": log["epoch"],
          "loss": log["loss"][k],
          "train_accuracy": log["accuracy"][k],
          "test_accuracy": log["test_accuracy"][k],
        }
      )
  return pd.DataFrame(rows, columns=list(results.TRAINING_COLUMNS))


_NOT_DIAGNOSTICS = {"epoch", "seeds", "rule_description", "fingerprint", "loss", "accuracy", "test_accuracy"}


def diagnostics_table(rule: str, workdir: pathlib.Path, *, data: str) -> pd.DataFrame:
  """diagnostics.csv rows of one rule: every logged metric other than loss and accuracies, per seed and epoch
  (learning-rule diagnostics measured on the epoch's last batch, e.g. `angle_fa_vs_bp_conv2`; PC's
  `energy_stepTT`, an epoch mean)."""
  rows = []
  for log in _logs(workdir, rule):
    for metric in sorted(set(log) - _NOT_DIAGNOSTICS):
      for k, seed in enumerate(log["seeds"]):
        rows.append(
          {"data": data, "rule": rule, "seed": seed, "epoch": log["epoch"], "metric": metric, "value": log[metric][k]}
        )
  return pd.DataFrame(rows, columns=list(results.DIAGNOSTICS_COLUMNS))


def indices_table(config: Any, training: training_sets.TrainingSet) -> pd.DataFrame:
  """results/train_indices.csv: per seed, the index of each of its training images in the original order of the
  source's training split (for CIFAR-10: the order of the archive, i.e. torchvision's, whatever the source)."""
  idx = np.asarray(training.train_indices)
  per_seed = idx if idx.ndim == 2 else np.broadcast_to(idx, (len(config.seeds), idx.shape[0]))
  seeds = np.repeat(np.asarray(config.seeds), per_seed.shape[1])
  return pd.DataFrame({"seed": seeds, "index": per_seed.reshape(-1)})


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


def _run_info(config, training, probe_set, all_stages, results_fp, mesh, setups) -> dict:
  bn_note = (
    "BN running statistics at extraction (correct)"
    if config.eval.bn_mode == "running"
    else "BN BATCH statistics at extraction: reproduces the reference implementation's defect (docs/methods.md §6.1)"
  )
  simulated = probe_set.data == "simulated"
  return {
    "config": stages.config_dict(config),
    "data": probe_set.data,
    "data_name": probe_set.name,
    "data_description": probe_set.description,
    "simulated_data_warning": (
      "SIMULATED brain data (brainalign demo): not real fMRI; results show what the "
      "pipeline computes, not findings about the brain"
    )
    if simulated
    else None,
    "train_data": training.name,
    "train_data_source": training.source_info,
    "bn_mode": bn_note,
    "versions": _versions(),
    "mesh": mesh.info,
    "execution": {name: su.execution for name, su in setups.items()},
    "stages": {s.name: s.fingerprint for s in all_stages},
    "results_fingerprint": results_fp,
  }


def _prepare_workdir(config, workdir, training, probe_set, setups, overwrite, mesh) -> tuple[dict, str]:
  """Compares the command's stages with the workdir's records (refusing or discarding stale ones), then writes
  the records, the probe store and run_info.json (process 0). Returns ({rule: (train, features, rdms)}, results
  fingerprint)."""
  stimuli = stages.stimulus_inputs(probe_set)
  per_rule = {
    name: stages.rule_stages(
      config, name, trains=su.rule.trains, training=training, probe_set=probe_set, stimuli=stimuli
    )
    for name, su in setups.items()
  }
  all_stages = [stages.probe_stage(config, probe_set, stimuli)] + [s for t in per_rule.values() for s in t]
  mismatches = provenance.check(workdir, all_stages)
  if mismatches and not overwrite:
    provenance.raise_on_mismatch(workdir, mismatches)
  results_fp = stages.results_fingerprint(config, all_stages)
  devices.barrier("checked")  # every process has read the records before process 0 changes them
  if devices.is_writer():
    _write_workdir(
      workdir,
      mismatches,
      all_stages,
      probe_set,
      results_fp,
      _run_info(config, training, probe_set, all_stages, results_fp, mesh, setups),
    )
  devices.barrier("prepared")
  return per_rule, results_fp


def _write_workdir(workdir, mismatches, all_stages, probe_set, results_fp, run_info) -> None:
  if mismatches:
    removed = provenance.discard(workdir, mismatches)
    logging.warning(
      "--overwrite: discarded the stale stages %s (removed %s)", [m.stage.name for m in mismatches], removed
    )
  workdir.mkdir(parents=True, exist_ok=True)
  for path in store.clean_temporaries(workdir):
    logging.info("Removed %s (left behind by an interrupted write)", path)
  provenance.write_records(workdir, all_stages)
  if store.stored_fingerprint(workdir / store.PROBE) != all_stages[0].fingerprint:
    store.write_probe(workdir, probe_set, all_stages[0].fingerprint)
  report_info = workdir / "report" / "report_info.json"
  if report_info.exists() and json.loads(report_info.read_text()).get("results_fingerprint") != results_fp:
    shutil.rmtree(workdir / "report")
    logging.warning("Removed %s: it was made from other results; run --mode=report again", workdir / "report")
  io.write_json(run_info, workdir / store.RUN_INFO)


def _write_figures(config, tables, probe_set, workdir) -> None:
  primary_res, first_pairs = max(probe_set.images), list(probe_set.pair_sets)[0]
  for res in probe_set.images:
    for pairs_name in probe_set.pair_sets:
      suffix = "" if (res == primary_res and pairs_name == first_pairs) else f"_{res}px_{pairs_name}"
      figures.alignment_vs_epoch(
        tables["summary"],
        workdir / "figures" / f"alignment_vs_epoch{suffix}.png",
        resolution=res,
        pairs=pairs_name,
        title=f"{probe_set.name} · {res} px · {pairs_name} pairs · {config.eval.bn_mode} BN · "
        f"mean ± SD over {len(config.seeds)} seeds",
      )


def _write_results(tables: dict, setups: dict, workdir: pathlib.Path, results_fp: str) -> None:
  for name, df in tables.items():
    io.write_csv(df, workdir / "results" / f"{name}.csv")
  # which variant each rule ran, and whether it reproduces a defective reference rule
  io.write_json({n: su.rule.description for n, su in setups.items()}, workdir / "results" / "rules.json")
  digests = {f"{n}.csv": provenance.file_digest(workdir / "results" / f"{n}.csv") for n in tables}
  io.write_json({"results_fingerprint": results_fp, "files": digests}, workdir / "results" / "manifest.json")


def run(
  config: Any, workdir: str, *, overwrite: bool = False, on_epoch: Callable[[str, int], None] | None = None
) -> dict:
  """Runs the configured study end to end; returns {table name: DataFrame} plus "work" (what was computed) and
  "timing" (seconds per stage, brainalign.timing; also logged and stored in run_info.json).

  overwrite: discard the stages of the workdir whose inputs differ from this command's (default: refuse).
  on_epoch: on_epoch(rule, epoch) after each trained epoch's log, before its checkpoint (for tests).
  With several processes (brainalign.devices) every process runs this; only process 0 writes files."""
  workdir = pathlib.Path(workdir).expanduser().resolve()
  clock = timing.Clock()
  with clock.stage("load"):
    validate.config(config)  # nothing is read or written before the config, the outputs and the inputs check out
    validate.outputs(config, workdir)
    training = training_sets.load_training_set(config.data, seeds=config.seeds)
    validate.brain_inputs(config)  # before any voxel row is read
    probe_set = probe.load_probe(config, mean=training.mean, std=training.std)
    mesh = devices.seed_mesh(len(config.seeds), int(config.mesh.seeds))
    setups = {name: rule_run.setup(config, name, training, mesh) for name in config.rules}
    per_rule, results_fp = _prepare_workdir(config, workdir, training, probe_set, setups, overwrite, mesh)
  logging.info("Data: %s", probe_set.description)
  logging.info("Devices: %s", mesh.info["note"])

  work, alignment, training_rows, diagnostic_rows = {}, [], [], []
  for name, su in setups.items():
    train_stage, feature_stage, rdm_stage = per_rule[name]
    fingerprints = {"train": train_stage.fingerprint, "features": feature_stage.fingerprint}
    work[name] = rule_run.train_and_extract(
      config, su, workdir, training, probe_set, on_epoch=on_epoch, fingerprints=fingerprints, clock=clock
    )
    with clock.stage("model RDMs", name):
      rdms = _rule_rdms(config, su, workdir, probe_set, rdm_stage.fingerprint)
    with clock.stage("RSA", name):
      alignment.append(alignment_for_rule(config, su, rdms, probe_set))
    training_rows.append(training_table(name, workdir, data=probe_set.data, train_data=training.name))
    diagnostic_rows.append(diagnostics_table(name, workdir, data=probe_set.data))
  with clock.stage("results"):
    tables = {
      "alignment": pd.concat(alignment, ignore_index=True),
      "training": pd.concat(training_rows, ignore_index=True),
      "diagnostics": pd.concat(diagnostic_rows, ignore_index=True),
    }
    tables["summary"] = results.summarize(tables["alignment"])
    tables["train_indices"] = indices_table(config, training)
    if devices.is_writer():
      _write_results(tables, setups, workdir, results_fp)
      _write_figures(config, tables, probe_set, workdir)
      logging.info("Results written to %s", workdir / "results")
  _record_timing(workdir, clock)
  devices.barrier("results")
  tables["work"] = work
  tables["timing"] = clock.record()
  return tables


def _record_timing(workdir: pathlib.Path, clock: timing.Clock) -> None:
  """Logs where this command's time went and adds it to run_info.json ("timing": this invocation only; a
  resumed run times only what it did)."""
  logging.info("%s", clock.table())
  if devices.is_writer():
    info = json.loads((workdir / store.RUN_INFO).read_text())
    info["timing"] = clock.record()
    io.write_json(info, workdir / store.RUN_INFO)
