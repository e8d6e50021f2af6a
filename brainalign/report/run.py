"""A finished run as the report reads it: only the stored files, each checked against the run's fingerprints.

The report never rebuilds what the run computed: the model RDMs come from rdms/<rule>/<res>px.npz, the brain
RDMs, pair sets and control RDMs from probe/probe.npz, the plain per-subject rho (the bootstrap's identity
row) from results/alignment.csv. A file whose embedded fingerprint differs from the run's record is refused.
"""

import dataclasses
import json
import pathlib

import ml_collections
import numpy as np
import pandas as pd

from brainalign import provenance, store
from brainalign.errors import MissingFileError, WorkdirError
from brainalign.models import READOUT_LAYERS


@dataclasses.dataclass(frozen=True)
class Run:
  """What the report needs of a run.

  conditions: DataFrame of V rows (rule, seed, epoch, layer), the row order of `vectors`.
  vectors: {res: float32 [V, P] model RDMs over all pairs}.
  """

  workdir: pathlib.Path
  info: dict
  config: ml_collections.ConfigDict
  probe: store.StoredProbe
  rules: list
  seeds: list
  conditions: pd.DataFrame
  vectors: dict
  alignment: pd.DataFrame

  @property
  def resolutions(self) -> list[int]:
    return sorted(self.vectors)


def _check_results(workdir: pathlib.Path, info: dict) -> pd.DataFrame:
  path = workdir / "results" / "manifest.json"
  if not path.exists():
    raise MissingFileError(f"{path} not found: the run did not finish", hint="rerun the run with the same command")
  manifest = json.loads(path.read_text())
  if manifest.get("results_fingerprint") != info.get("results_fingerprint"):
    raise provenance.ProvenanceError(
      f"{workdir / 'results'} was written from other stages than {workdir / store.RUN_INFO} records",
      hint="rerun the run with the same command to rewrite the results",
    )
  csv = workdir / "results" / "alignment.csv"
  if provenance.file_digest(csv) != manifest["files"].get("alignment.csv"):
    raise provenance.ProvenanceError(
      f"{csv} differs from what the run wrote (its content digest does not match results/manifest.json)",
      hint="rerun the run with the same command to rewrite it",
    )
  return pd.read_csv(csv)


def load(workdir: str | pathlib.Path) -> Run:
  """Reads and checks a finished run (see the module docstring)."""
  workdir = pathlib.Path(workdir).expanduser().resolve()
  info = store.read_run_info(workdir)
  if "stages" not in info:
    raise WorkdirError(
      f"{workdir / store.RUN_INFO} has no stage fingerprints: the run was made by an older brainalign",
      hint="rerun it with the same command and --overwrite",
    )
  config = ml_collections.ConfigDict(info["config"])
  probe = store.read_probe(workdir)
  provenance.verify_file(workdir / store.PROBE, probe.fingerprint, info["stages"]["probe"], "probe")
  alignment = _check_results(workdir, info)
  rules, seeds = list(config.rules), [int(s) for s in config.seeds]
  rows, vectors = [], {}
  for rule in rules:
    for res in sorted(int(r) for r in config.eval.resolutions):
      path = store.rdm_path(workdir, rule, res)
      z = store.read_rdms(path)
      provenance.verify_file(path, z["fingerprint"], info["stages"][f"rdms-{rule}"], f"rdms-{rule}")
      vectors.setdefault(res, []).append(z["vectors"].reshape(-1, z["vectors"].shape[-1]))
    epochs = [int(e) for e in z["epochs"]]
    rows += [dict(rule=rule, seed=s, epoch=e, layer=la) for s in seeds for e in epochs for la in READOUT_LAYERS]
  vectors = {res: np.concatenate(v) for res, v in vectors.items()}
  return Run(
    workdir=workdir,
    info=info,
    config=config,
    probe=probe,
    rules=rules,
    seeds=seeds,
    conditions=pd.DataFrame(rows),
    vectors=vectors,
    alignment=alignment,
  )


def identity_rho(run: Run, res: int, pairs_name: str) -> np.ndarray:
  """[V, R, S] the run's own per-subject rho (results/alignment.csv) in the order of `run.conditions`."""
  a = run.alignment[(run.alignment.resolution == res) & (run.alignment.pairs == pairs_name)]
  keys = ["rule", "seed", "epoch", "layer"]
  index = run.conditions.reset_index().merge(a, on=keys, how="left")
  brain = run.probe.brain
  r = index.roi.map({x: k for k, x in enumerate(brain.rois)}).to_numpy()
  s = index.subject.map({x: k for k, x in enumerate(brain.subjects)}).to_numpy()
  if np.isnan(r.astype(float)).any() or np.isnan(s.astype(float)).any():
    raise WorkdirError(
      f"{run.workdir / 'results' / 'alignment.csv'} lacks rows of {res} px / {pairs_name} pairs for some condition",
      hint="rerun the run with the same command",
    )
  out = np.full((len(run.conditions), len(brain.rois), len(brain.subjects)), np.nan)
  out[index["index"].to_numpy(), r.astype(int), s.astype(int)] = index.rho.to_numpy()
  return out
