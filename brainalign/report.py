"""The report step: a finished run's features + the brain RDMs -> statistics, tables, figures, a markdown page.

  python main.py --mode=report --workdir=runs/demo [--config=configs/demo.py --config.stats.bootstrap_samples=200]

The run's own settings (rules, seeds, resolutions, pair sets, brain source) come from `<workdir>/run_info.json`;
the statistics settings from the `stats` block of the `--config` given to the report (configs/common.py).

The report has one section per (evaluation resolution, pair set) of the run, the primary one (stats.resolution,
stats.pairs) first. Each section is computed from ONE compiled bootstrap call (`stats.bootstrap_rsa`) over all
conditions (rule x seed x milestone x layer) x ROIs x subjects (+ the subject-mean RDM), and one
`stats.bootstrap_partial` call for partial RSA, whose resample row 0 is the data itself; every section uses the
same resample rows. Every quantity below is a NumPy reduction of those [B + 1, ...] grids, so each has a
percentile CI from the same resamples.

Conventions (also written on the page):
  * rho = per-subject comparator value, averaged over subjects, then over seeds (P1 v4 / P3 convention);
    beside it, rho_mean_rdm = comparator against the subject-mean RDM, per seed, then the seed mean (P1 v1/v2).
  * tests at every milestone (rule pairs; Δρ from epoch 0), BH-FDR / Holm within stats.family (`FAMILIES`).
  * fixed layer: stats.layer_for_roi (the study's Conv1->V1, Conv1->V2, Conv3->LOC, FC1->IT; V3, hV4 -> conv2).
  * best layer: per seed the layer with the highest subject-mean rho (P3), then the seed mean; on each
    resample the choice is made again (the CI is that of the whole procedure).
  * noise ceiling: raw lower (leave-one-subject-out) and upper bounds, pooled as rsatoolbox pools for the
    comparator; no score is divided by a ceiling.

Outputs in <workdir>/report/: report.md, *.csv (tidy), figures/*.png.
"""

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
import pandas as pd
from absl import logging

from brainalign import io, probe, rsa, stats
from brainalign.data import images
from brainalign.figures import PALETTE
from brainalign.models import READOUT_LAYERS

SIMULATED_WARNING = (
  "**SIMULATED brain data** (brainalign demo): not real fMRI. These numbers show what the "
  "pipeline computes, not findings about the brain."
)


def _epochs_of(feat_dir: pathlib.Path) -> list[int]:
  return sorted(int(p.stem.split("_")[1]) for p in feat_dir.glob("epoch_*.npz"))


def _resolve_pairs(run_config: Any, requested: str) -> str:
  evaluated = list(run_config.eval.pair_sets)
  if requested == "auto":
    return "cross_run" if "cross_run" in evaluated else evaluated[0]
  return requested


# BH-FDR / Holm families (stats.family): the columns whose values split the tests into families. Every
# (resolution, pair set) section of the report is corrected separately; the pairwise-difference and the
# Δρ-from-epoch-0 tables are separate families (different questions).
FAMILIES = {
  "rule_roi_per_milestone": (
    ("epoch",),
    "all rule pairs × ROIs at one milestone (one family per milestone); for Δρ, all rules × ROIs at one milestone",
  ),
  "rule_roi_all_milestones": (
    (),
    "all rule pairs × ROIs × milestones (one family); for Δρ, all rules × ROIs × milestones",
  ),
  "rule_per_roi_milestone": (
    ("epoch", "roi"),
    "all rule pairs at one milestone and ROI (one family per "
    "milestone × ROI); for Δρ, all rules at one milestone and ROI",
  ),
}


def _check_family(family: str) -> None:
  if family not in FAMILIES:
    raise ValueError(f"unknown stats.family {family!r}; expected one of {tuple(FAMILIES)}")


def correct_family(df: pd.DataFrame, family: str, alpha: float, label: str = "") -> pd.DataFrame:
  """Adds `family`, `q_bh`, `p_holm`, `significant_bh` to a table of tests, correcting `p_boot` within
  each declared family (rows sharing the values of `FAMILIES[family]` columns).

  Args:
    df: one row per test with a `p_boot` column (and `epoch`, `roi` columns as the family needs).
    family: a key of `FAMILIES`. alpha: significance level for `significant_bh`. label: family name prefix.
  Returns:
    a copy of df with the four columns.
  """
  _check_family(family)
  df = df.copy()
  keys = list(FAMILIES[family][0])
  df["family"] = label + (
    df[keys].astype(str).agg(lambda r: ", ".join(f"{k}={v}" for k, v in zip(keys, r)), axis=1) if keys else "all"
  )
  df["q_bh"] = np.nan
  df["p_holm"] = np.nan
  for _, idx in df.groupby("family", sort=False).groups.items():
    df.loc[idx, "q_bh"] = stats.bh_fdr(df.loc[idx, "p_boot"].to_numpy())
    df.loc[idx, "p_holm"] = stats.holm(df.loc[idx, "p_boot"].to_numpy())
  df["significant_bh"] = df.q_bh <= alpha
  return df


def sections(run_config: Any, stats_config: Any) -> list[tuple[int, str]]:
  """Every (resolution px, pair set) the run evaluated; the primary one (stats.resolution, stats.pairs) first."""
  resolutions = [int(r) for r in run_config.eval.resolutions]
  pair_sets = list(run_config.eval.pair_sets)
  res = int(stats_config.resolution) or max(resolutions)
  if res not in resolutions:
    raise ValueError(
      f"stats.resolution={res} px was not evaluated by the run (eval.resolutions={tuple(run_config.eval.resolutions)})"
    )
  pairs_name = _resolve_pairs(run_config, stats_config.pairs)
  if pairs_name not in pair_sets:
    raise ValueError(f"stats.pairs={pairs_name!r} was not evaluated by the run (eval.pair_sets={tuple(pair_sets)})")
  rest = [(r, p) for r in sorted(resolutions, reverse=True) for p in pair_sets if (r, p) != (res, pairs_name)]
  return [(res, pairs_name)] + rest


def load_run(workdir: pathlib.Path) -> dict:
  """run_info.json and the brain RDMs of a finished run: {info, run_config, data, brain, images_dir}."""
  info_path = workdir / "run_info.json"
  if not info_path.exists():
    raise FileNotFoundError(
      f"{info_path} not found: --workdir must be the folder of a finished run (python main.py --workdir=...)"
    )
  info = json.loads(info_path.read_text())
  run_config = ml_collections.ConfigDict(info["config"])
  data, brain, images_dir = probe.load_brain(run_config.brain)
  return dict(info=info, run_config=run_config, data=data, brain=brain, images_dir=images_dir)


def load_inputs(
  workdir: pathlib.Path,
  stats_config: Any,
  res: int | None = None,
  pairs_name: str | None = None,
  run: dict | None = None,
) -> dict:
  """One report section: the brain RDMs and every rule's saved features at one resolution and pair set.

  res / pairs_name default to the primary section (`sections`); run: `load_run`'s output (read if None).
  Returns a dict with: run_config, data, description, brain, res, pairs_name, pairs (i, j), brain_vectors
  [S, R, P], model_vectors [V, P], conditions (DataFrame of V rows: rule, seed, epoch, layer), rules,
  seeds, epochs (union), images_dir.
  """
  workdir = pathlib.Path(workdir)
  run = run or load_run(workdir)
  run_config, brain = run["run_config"], run["brain"]
  primary = sections(run_config, stats_config)[0]
  res = primary[0] if res is None else int(res)
  pairs_name = primary[1] if pairs_name is None else pairs_name
  n = len(brain.stimuli)
  i, j = probe.pair_set(pairs_name, n, brain.item_runs())
  flat = (i.astype(np.int64) * n - i * (i + 1) // 2 + (j - i - 1)).astype(np.int64)
  brain_vectors = np.asarray(brain.rdm_vectors[..., flat], np.float32)  # [S, R, P]

  rows, vectors = [], []
  pairs_dev = (jnp.asarray(i, jnp.int32), jnp.asarray(j, jnp.int32))
  for rule in run_config.rules:
    feat_dir = workdir / "features" / rule
    epochs = _epochs_of(feat_dir)
    if not epochs:
      raise FileNotFoundError(f"no features in {feat_dir}: did the run finish?")
    for epoch in epochs:
      with np.load(feat_dir / f"epoch_{epoch:04d}.npz") as z:
        for layer in READOUT_LAYERS:
          key = f"{res}px/{layer}"
          if key not in z.files:
            raise KeyError(f"{feat_dir}/epoch_{epoch:04d}.npz has no {key!r} (has {z.files})")
          v = np.asarray(rsa.rdm_vectors(jnp.asarray(z[key]), pairs_dev, run_config.eval.rdm_metric))  # [S, P]
          vectors.append(v)
          rows += [dict(rule=rule, seed=int(s), epoch=epoch, layer=layer) for s in run_config.seeds]
  return dict(
    run_config=run_config,
    data=run["data"],
    description=run["info"].get("data_description", run["data"]),
    brain=brain,
    res=res,
    pairs_name=pairs_name,
    pairs=(i, j),
    brain_vectors=brain_vectors,
    model_vectors=np.concatenate(vectors).astype(np.float32),
    conditions=pd.DataFrame(rows),
    rules=list(run_config.rules),
    seeds=[int(s) for s in run_config.seeds],
    epochs=sorted({r["epoch"] for r in rows}),
    images_dir=run["images_dir"],
  )


def _grid(inputs: dict, rho_subject_mean: np.ndarray) -> np.ndarray:
  """[B + 1, V, R] -> [B + 1, rules, seeds, epochs, layers, R], NaN where a rule lacks an epoch."""
  c = inputs["conditions"]
  rules, seeds, epochs = inputs["rules"], inputs["seeds"], inputs["epochs"]
  out = np.full(
    (rho_subject_mean.shape[0], len(rules), len(seeds), len(epochs), len(READOUT_LAYERS), rho_subject_mean.shape[-1]),
    np.nan,
  )
  ru = c.rule.map({r: k for k, r in enumerate(rules)}).to_numpy()
  se = c.seed.map({s: k for k, s in enumerate(seeds)}).to_numpy()
  ep = c.epoch.map({e: k for k, e in enumerate(epochs)}).to_numpy()
  la = c.layer.map({l: k for k, l in enumerate(READOUT_LAYERS)}).to_numpy()
  out[:, ru, se, ep, la, :] = rho_subject_mean
  return out


def _ci_cols(samples: np.ndarray, ci: float, prefix: str = "") -> dict:
  """samples [B + 1, ...]: row 0 = estimate, rows 1.. = bootstrap -> {value, ci_low, ci_high} arrays."""
  lo, hi = stats.percentile_ci(samples[1:], ci)
  return {f"{prefix}value": samples[0], f"{prefix}ci_low": lo, f"{prefix}ci_high": hi}


def _tests_frame(meta: dict, r_names: list, cols: dict) -> pd.DataFrame:
  """Tidy rows of T tests x R ROIs: meta {name: [T]}, cols {name: [T, R]} -> DataFrame (T x R rows)."""
  t_count = len(next(iter(meta.values()))) if meta else 0
  t_idx, r_idx = (g.ravel() for g in np.meshgrid(np.arange(t_count), np.arange(len(r_names)), indexing="ij"))
  out = (
    {k: np.asarray(v, dtype=object if isinstance(v[0], str) else None)[t_idx] for k, v in meta.items()}
    if t_count
    else {}
  )
  out["roi"] = np.asarray(r_names, dtype=object)[r_idx]
  out.update({k: np.asarray(v).reshape(t_count, len(r_names))[t_idx, r_idx] for k, v in cols.items()})
  return pd.DataFrame(out)


def resample_indices(n: int, stats_config: Any) -> jax.Array:
  """int32 [B + 1, n]: the identity (row 0, the estimate) then B stimulus resamples from stats.bootstrap_seed;
  every section and every statistic of a report uses these rows."""
  return jnp.concatenate(
    [
      stats.identity_resample(n),
      stats.draw_resamples(jax.random.key(int(stats_config.bootstrap_seed)), int(stats_config.bootstrap_samples), n),
    ]
  )


def compute(inputs: dict, stats_config: Any) -> dict:
  """Runs the bootstrap of one section and reduces it to the report's tables. Returns {name: DataFrame} plus arrays."""
  n = len(inputs["brain"].stimuli)
  family = str(stats_config.family)
  _check_family(family)
  resamples = resample_indices(n, stats_config)
  out = stats.bootstrap_rsa(
    inputs["model_vectors"],
    inputs["brain_vectors"],
    inputs["pairs"],
    resamples,
    n=n,
    method=stats_config.comparator,
    batch_size=int(stats_config.batch_size),
    model_chunk=int(stats_config.model_chunk),
    mean_rdm=True,
  )
  rho_subj = np.asarray(out["rho"], np.float64)  # [B + 1, V, R, S]
  lower, upper = (np.asarray(out[k], np.float64) for k in ("noise_lower", "noise_upper"))
  grid = _grid(inputs, rho_subj.mean(-1))  # [B + 1, Ru, Se, E, L, R]
  grid_mr = _grid(inputs, np.asarray(out["rho_mean_rdm"], np.float64))  # subject-mean-RDM convention
  per_subject = _grid(inputs, np.moveaxis(rho_subj[0], -1, 0))  # point estimates [Subj, Ru, Se, E, L, R]

  rules, seeds, epochs = inputs["rules"], inputs["seeds"], inputs["epochs"]
  rois = list(inputs["brain"].rois)
  r_all = np.arange(len(rois))
  ci, alpha = float(stats_config.ci), float(stats_config.alpha)
  mapping = dict(stats_config.layer_for_roi)
  missing = [r for r in rois if r not in mapping]
  if missing:
    raise ValueError(f"stats.layer_for_roi has no layer for ROI(s) {missing}")
  fixed_idx = np.array([READOUT_LAYERS.index(mapping[r]) for r in rois])
  fixed_seed = grid[..., fixed_idx, r_all]  # [B+1, Ru, Se, E, R]
  fixed = fixed_seed.mean(axis=2)  # [B+1, Ru, E, R]
  best_seed = grid.max(axis=4)  # [B+1, Ru, Se, E, R] (NaN if any layer NaN)
  best = best_seed.mean(axis=2)
  fixed_mr = grid_mr[..., fixed_idx, r_all].mean(axis=2)  # [B+1, Ru, E, R]: per seed, then seed mean (P1 v2)
  best_mr = grid_mr.max(axis=4).mean(axis=2)
  fixed_subj = per_subject[..., fixed_idx, r_all].mean(axis=2)  # [Subj, Ru, E, R] (seed mean per subject)
  best_layer = np.argmax(np.nan_to_num(grid[0], nan=-np.inf), axis=3)  # [Ru, Se, E, R] point choice per seed
  have = ~np.isnan(fixed[0]).all(axis=-1)  # [Ru, E]: the rule has this checkpoint
  last_idx = np.array([np.flatnonzero(have[a])[-1] for a in range(len(rules))])
  last = {ru: epochs[last_idx[a]] for a, ru in enumerate(rules)}  # each rule's last checkpoint
  static = have.sum(axis=1) == 1  # evaluated at one checkpoint only (e.g. the untrained network)
  ru_all = np.arange(len(rules))
  tables = {}

  # noise ceiling
  nc = pd.DataFrame({"roi": rois, **_ci_cols(lower, ci, "lower_"), **_ci_cols(upper, ci, "upper_")})
  nc.insert(1, "n_pairs", len(inputs["pairs"][0]))
  tables["noise_ceiling"] = nc

  # trajectories (every rule, epoch, ROI; fixed layer and best layer; both group conventions)
  traj = []
  for kind, arr, arr_seed, arr_mr in (("fixed", fixed, fixed_seed, fixed_mr), ("best", best, best_seed, best_mr)):
    cols, cols_mr = _ci_cols(arr, ci), _ci_cols(arr_mr, ci)
    sd = np.std(arr_seed[0], axis=1, ddof=1) if len(seeds) > 1 else np.full(arr.shape[1:], np.nan)
    a_idx, e_idx = np.nonzero(have)
    meta = dict(rule=[rules[a] for a in a_idx], epoch=[epochs[e] for e in e_idx])
    df = _tests_frame(
      meta,
      rois,
      {
        k: v[a_idx, e_idx]
        for k, v in (
          ("rho", cols["value"]),
          ("ci_low", cols["ci_low"]),
          ("ci_high", cols["ci_high"]),
          ("seed_sd", sd),
          ("rho_mean_rdm", cols_mr["value"]),
          ("mean_rdm_ci_low", cols_mr["ci_low"]),
          ("mean_rdm_ci_high", cols_mr["ci_high"]),
        )
      },
    )
    df.insert(3, "layer", df.roi.map(mapping) if kind == "fixed" else "best")
    df.insert(4, "layer_kind", kind)
    traj.append(df)
  tables["trajectory"] = pd.concat(traj, ignore_index=True)

  # full layer x ROI matrix at each rule's last checkpoint
  g = grid[:, ru_all[:, None], np.arange(len(seeds))[None, :], last_idx[:, None]].mean(axis=2)  # [B+1, Ru, L, R]
  cols = _ci_cols(g, ci)
  a_idx, l_idx = (x.ravel() for x in np.meshgrid(np.arange(len(rules)), np.arange(len(READOUT_LAYERS)), indexing="ij"))
  df = _tests_frame(
    dict(
      rule=[rules[a] for a in a_idx], epoch=[last[rules[a]] for a in a_idx], layer=[READOUT_LAYERS[l] for l in l_idx]
    ),
    rois,
    {k: cols[c][a_idx, l_idx] for k, c in (("rho", "value"), ("ci_low", "ci_low"), ("ci_high", "ci_high"))},
  )
  df["fixed"] = df.layer == df.roi.map(mapping)
  tables["layer_roi"] = df

  # pairwise differences between rules at every milestone (a rule evaluated at one checkpoint only, like
  # the untrained network, enters every milestone with that checkpoint); corrected within stats.family
  tests = []
  for e, epoch in enumerate(epochs):
    for a in range(len(rules)):
      for b in range(a + 1, len(rules)):
        ea = e if have[a, e] else (last_idx[a] if static[a] else None)
        eb = e if have[b, e] else (last_idx[b] if static[b] else None)
        if ea is None or eb is None or (static[a] and static[b] and epoch != max(epochs[ea], epochs[eb])):
          continue
        tests.append((epoch, a, ea, b, eb))
  if tests:
    ep_t, a_t, ea_t, b_t, eb_t = (np.array(x) for x in zip(*tests))
    d = fixed[:, a_t, ea_t] - fixed[:, b_t, eb_t]  # [B+1, T, R]
    lo, hi = stats.percentile_ci(d[1:], ci)
    direction = np.where(np.sign(d[0]) == 0, 1, np.sign(d[0]))  # [T, R]
    sa, sb = fixed_seed[0][a_t, :, ea_t], fixed_seed[0][b_t, :, eb_t]  # [T, Se, R]
    p_flip = stats.sign_flip_p(np.moveaxis((sa - sb) * direction[:, None], 1, -1))
    d_seeds = (
      stats.cohens_d(np.moveaxis(sa, 1, -1), np.moveaxis(sb, 1, -1))
      if len(seeds) > 1
      else np.full(direction.shape, np.nan)
    )
    d_subj = stats.cohens_d(np.moveaxis(fixed_subj[:, a_t, ea_t], 0, -1), np.moveaxis(fixed_subj[:, b_t, eb_t], 0, -1))
    pw = _tests_frame(
      dict(
        epoch=ep_t,
        rule_a=[rules[a] for a in a_t],
        epoch_a=[epochs[e] for e in ea_t],
        rule_b=[rules[b] for b in b_t],
        epoch_b=[epochs[e] for e in eb_t],
      ),
      rois,
      dict(
        diff=d[0],
        ci_low=lo,
        ci_high=hi,
        p_boot=stats.bootstrap_p_two_sided(d[1:]),
        p_signflip_seeds=p_flip,
        cohens_d_seeds=d_seeds,
        cohens_d_subjects=d_subj,
      ),
    )
    pw.insert(pw.columns.get_loc("roi") + 1, "layer", pw.roi.map(mapping))
    pw = correct_family(pw, family, alpha, "pairwise: ")
  else:
    pw = pd.DataFrame()
  tables["pairwise"] = pw

  # delta r from epoch 0 per milestone; corrected within stats.family
  e0 = epochs.index(0) if 0 in epochs else None
  tests = [
    (a, e)
    for a in range(len(rules))
    for e in range(len(epochs))
    if e0 is not None and e != e0 and have[a, e] and have[a, e0]
  ]
  if tests:
    a_t, e_t = (np.array(x) for x in zip(*tests))
    d = fixed[:, a_t, e_t] - fixed[:, a_t, e0]  # [B+1, T, R]
    lo, hi = stats.percentile_ci(d[1:], ci)
    pct = 100.0 * d / fixed[:, a_t, e0]
    plo, phi = stats.percentile_ci(pct[1:], ci)
    dseed = fixed_seed[0][a_t, :, e_t] - fixed_seed[0][a_t, :, e0]  # [T, Se, R]
    direction = np.where(np.sign(d[0]) == 0, 1, np.sign(d[0]))
    p_flip = stats.sign_flip_p(np.moveaxis(dseed * direction[:, None], 1, -1))
    dz = stats.cohens_dz(np.moveaxis(dseed, 1, -1)) if len(seeds) > 1 else np.full(direction.shape, np.nan)
    dr = _tests_frame(
      dict(rule=[rules[a] for a in a_t], epoch=[epochs[e] for e in e_t]),
      rois,
      dict(
        rho_epoch0=fixed[0, a_t, e0],
        rho=fixed[0, a_t, e_t],
        delta_r=d[0],
        ci_low=lo,
        ci_high=hi,
        percent_change=pct[0],
        pct_ci_low=plo,
        pct_ci_high=phi,
        p_boot=stats.bootstrap_p_two_sided(d[1:]),
        p_signflip_seeds=p_flip,
        cohens_dz_seeds=dz,
      ),
    )
    dr.insert(dr.columns.get_loc("roi") + 1, "layer", dr.roi.map(mapping))
    dr = correct_family(dr, family, alpha, "delta_r: ")
  else:
    dr = pd.DataFrame()
  tables["delta_r"] = dr

  # the epoch at which each rule's alignment is lowest (per ROI), re-chosen on every resample
  rows = []
  for a, rule in enumerate(rules):
    have_e = np.flatnonzero(have[a])
    if len(have_e) < 2:
      continue
    ep = np.array(epochs)[have_e]
    arg = ep[np.argmin(fixed[:, a][:, have_e], axis=1)]  # [B+1, R] epoch of the minimum
    lo, hi = stats.percentile_ci(arg[1:].astype(float), ci)
    rows.append(
      pd.DataFrame(
        dict(
          rule=rule,
          roi=rois,
          layer=[mapping[r] for r in rois],
          min_epoch=arg[0],
          ci_low=lo,
          ci_high=hi,
          share_of_resamples=np.mean(arg[1:] == arg[0], axis=0),
        )
      )
    )
  tables["min_epoch"] = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()

  # main table: each rule at its last checkpoint, fixed layer, CI, ceiling, marks; both group conventions
  ref = stats_config.reference_rule
  ru = np.arange(len(rules))
  fin, fin_best, fin_mr = fixed[:, ru, last_idx], best[:, ru, last_idx], fixed_mr[:, ru, last_idx]  # [B+1, Ru, R]
  cols, cols_b, cols_mr = _ci_cols(fin, ci), _ci_cols(fin_best, ci), _ci_cols(fin_mr, ci)
  main = _tests_frame(
    dict(rule=rules, epoch=[last[r] for r in rules]),
    rois,
    dict(
      rho=cols["value"],
      ci_low=cols["ci_low"],
      ci_high=cols["ci_high"],
      rho_mean_rdm=cols_mr["value"],
      mean_rdm_ci_low=cols_mr["ci_low"],
      mean_rdm_ci_high=cols_mr["ci_high"],
      best_layer_rho=cols_b["value"],
      best_ci_low=cols_b["ci_low"],
      best_ci_high=cols_b["ci_high"],
      noise_lower=np.broadcast_to(lower[0], fin.shape[1:]),
      noise_upper=np.broadcast_to(upper[0], fin.shape[1:]),
    ),
  )
  main.insert(main.columns.get_loc("roi") + 1, "layer", main.roi.map(mapping))
  main.insert(7, "excludes_zero", (main.ci_low > 0) | (main.ci_high < 0))
  main["best_layers_per_seed"] = [
    "/".join(READOUT_LAYERS[k] for k in best_layer[a, :, last_idx[a], r])
    for a in range(len(rules))
    for r in range(len(rois))
  ]
  sig = []
  for _, m in main.iterrows():
    hit = (
      pw[
        (pw.roi == m.roi)
        & (pw.epoch == m.epoch)
        & (((pw.rule_a == m.rule) & (pw.rule_b == ref)) | ((pw.rule_a == ref) & (pw.rule_b == m.rule)))
      ]
      if len(pw) and m.rule != ref
      else []
    )
    sig.append(bool(hit.significant_bh.iloc[0]) if len(hit) else np.nan)
  main.insert(8, "differs_from_reference", sig)
  tables["main"] = main
  tables["partial_rsa"] = _partial(inputs, stats_config, last_idx, resamples, fin)
  return {"tables": tables, "fixed": fixed, "best": best, "lower": lower, "upper": upper}


def partial_forms(stats_config: Any) -> tuple[str, ...]:
  """The partial-RSA forms of `stats.partial_forms` (validated); the first is the one the markdown shows."""
  forms = tuple(stats_config.get("partial_forms", stats.PARTIAL_FORMS))
  if not forms or any(f not in stats.PARTIAL_FORMS for f in forms) or len(set(forms)) != len(forms):
    raise ValueError(f"stats.partial_forms must be distinct names from {stats.PARTIAL_FORMS}, got {forms}")
  return forms


def _partial_column(name: str, form: str) -> str:
  """CSV column of one control and form: rho_partial_<control> (reference), rho_partial_<control>_closed."""
  return f"rho_partial_{name}" + ("" if form == "reference" else "_closed")


def _partial(
  inputs: dict, stats_config: Any, last_idx: np.ndarray, resamples: jax.Array, fin: np.ndarray
) -> pd.DataFrame:
  """Partial Spearman (pixel RDM, luminance RDM) at each rule's last checkpoint, fixed layer, with stimulus-
  bootstrap CIs on the same resamples as everything else (`stats.bootstrap_partial`); fin [B+1, Ru, R] is
  the plain rho on those resamples (for the difference partial - plain)."""
  brain = inputs["brain"]
  try:
    layout = inputs["run_config"].brain.get("image_layout", "") or (
      "flat" if inputs["run_config"].brain.source == "rdms" else "things"
    )
    try:
      paths = images.stimulus_paths(inputs["images_dir"], brain.stimuli, layout)
    except TypeError:  # older stimulus_paths(images_dir, stimuli)
      paths = images.stimulus_paths(inputs["images_dir"], brain.stimuli)
    imgs = images.load_images(paths, inputs["res"])
  except (OSError, ValueError, KeyError) as e:
    logging.warning("Partial RSA skipped: stimulus images not readable (%s)", e)
    return pd.DataFrame()
  controls = {
    "pixel": stats.pixel_rdm_vector(imgs, inputs["pairs"]),
    "luminance": stats.luminance_rdm_vector(imgs, inputs["pairs"]),
  }
  c = inputs["conditions"]
  mapping = dict(stats_config.layer_for_roi)
  rules, seeds, epochs, rois = inputs["rules"], inputs["seeds"], inputs["epochs"], list(brain.rois)
  # the model rows needed: rule x ROI x seed at the rule's last checkpoint and the ROI's fixed layer
  want = pd.DataFrame(
    [
      dict(rule=ru, epoch=epochs[last_idx[a]], layer=mapping[roi], seed=s)
      for a, ru in enumerate(rules)
      for roi in rois
      for s in seeds
    ]
  )
  index = c.reset_index().merge(want, on=["rule", "epoch", "layer", "seed"], how="right")["index"].to_numpy()
  uniq, inv = np.unique(index, return_inverse=True)
  s_count = inputs["brain_vectors"].shape[0]
  y = inputs["brain_vectors"].reshape(-1, inputs["brain_vectors"].shape[-1])  # [S * R, P], row s * R + r
  forms = partial_forms(stats_config)
  out = stats.bootstrap_partial(
    inputs["model_vectors"][uniq],
    y,
    np.stack(list(controls.values())),
    inputs["pairs"],
    resamples,
    n=len(brain.stimuli),
    forms=forms,
    batch_size=int(stats_config.batch_size),
  )
  v_idx = inv.reshape(len(rules), len(rois), len(seeds))[..., None]  # [Ru, R, Se, 1]
  k_idx = (np.arange(s_count)[None, :] * len(rois) + np.arange(len(rois))[:, None])[None, :, None, :]  # [1, R, 1, S]
  ci = float(stats_config.ci)
  cols = {"rho": fin}
  for form, arr in out.items():
    vals = np.asarray(arr, np.float64)[:, :, v_idx, k_idx].mean(axis=(-2, -1))  # [B+1, C, Ru, R]
    for c_k, name in enumerate(controls):
      cols[_partial_column(name, form)] = vals[:, c_k]
  cols["delta_pixel"] = cols[_partial_column("pixel", forms[0])] - fin  # the first (shown) form
  flat = {}
  for name, v in cols.items():
    lo, hi = stats.percentile_ci(v[1:], ci)
    flat.update({name: v[0], f"{name}_ci_low": lo, f"{name}_ci_high": hi})
  df = _tests_frame(dict(rule=rules, epoch=[epochs[e] for e in last_idx]), rois, flat)
  df.insert(df.columns.get_loc("roi") + 1, "layer", df.roi.map(mapping))
  return df


def _fmt(v: float, digits: int = 3) -> str:
  return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _ci(lo: float, hi: float, digits: int = 3) -> str:
  return f"[{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def _figures(
  inputs: dict,
  result: dict,
  stats_config: Any,
  folder: pathlib.Path,
  title: str,
  suffix: str = "",
  heatmaps: bool = True,
) -> list[str]:
  """Writes one section's figures (file names end in `suffix`); returns their file names."""
  traj = result["tables"]["trajectory"]
  nc = result["tables"]["noise_ceiling"].set_index("roi")
  rules, rois = inputs["rules"], list(inputs["brain"].rois)
  colours = {r: PALETTE[k % len(PALETTE)] for k, r in enumerate(rules)}
  epochs = inputs["epochs"]
  written = []

  def trajectory_axes(ax, roi, kinds=("fixed",), show_ceiling=True):
    for rule in rules:
      for kind, style in zip(kinds, ("-", "--")):
        d = traj[(traj.rule == rule) & (traj.roi == roi) & (traj.layer_kind == kind)].sort_values("epoch")
        if d.empty:
          continue
        label = f"{rule} ({d.layer.iloc[0] if kind == 'fixed' else 'best layer'})"
        if len(d) == 1 and len(epochs) > 1:
          ax.axhline(d.rho.iloc[0], color=colours[rule], ls=":", lw=1.5, label=label + ", untrained")
          ax.axhspan(d.ci_low.iloc[0], d.ci_high.iloc[0], color=colours[rule], alpha=0.08, lw=0)
          continue
        ax.plot(d.epoch, d.rho, style, marker="o", ms=3, color=colours[rule], label=label)
        ax.fill_between(d.epoch, d.ci_low, d.ci_high, color=colours[rule], alpha=0.15, lw=0)
    if show_ceiling and roi in nc.index:  # the upper bound (~0.6 at 3 subjects) is uninformative: table only
      ax.axhspan(nc.loc[roi, "lower_ci_low"], nc.loc[roi, "lower_ci_high"], color="0.9", zorder=0, lw=0)
      ax.axhline(
        nc.loc[roi, "lower_value"], color="0.4", ls="--", lw=1, zorder=0, label="noise ceiling, lower bound (band: CI)"
      )
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(epochs)
    ax.set_xticklabels([str(e) for e in epochs])
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{stats_config.comparator} ρ (model vs brain RDM)")
    ax.set_title(roi)

  def save(fig, name):
    name = name.replace(".png", f"{suffix}.png")
    with io.atomic_path(folder / name) as tmp:
      fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)
    written.append(name)

  ci_pct = int(round(100 * float(stats_config.ci)))
  v1 = "V1" if "V1" in rois else rois[0]
  fig, ax = plt.subplots(figsize=(6, 4.2))
  trajectory_axes(ax, v1, kinds=("fixed", "best"))
  ax.legend(fontsize=7, frameon=False)
  fig.suptitle(f"{title}\n{v1} alignment across training, {ci_pct}% stimulus-bootstrap CI", fontsize=9)
  fig.tight_layout()
  save(fig, "v1_trajectory.png")

  ncol = min(3, len(rois))
  nrow = -(-len(rois) // ncol)
  fig, axes = plt.subplots(nrow, ncol, figsize=(4.3 * ncol, 3.4 * nrow), squeeze=False)
  for ax, roi in zip(axes.ravel(), rois):
    trajectory_axes(ax, roi)
  for ax in axes.ravel()[len(rois) :]:
    ax.axis("off")
  h, l = axes.ravel()[0].get_legend_handles_labels()
  fig.legend(h, l, loc="lower center", ncol=min(4, len(l)), frameon=False, fontsize=8)
  fig.suptitle(f"{title}\nfixed layer per ROI, {ci_pct}% CI; grey = noise ceiling lower bound", fontsize=9)
  fig.tight_layout(rect=(0, 0.07, 1, 0.93))
  save(fig, "all_rois.png")

  dr = result["tables"]["delta_r"]
  fig, axes = plt.subplots(nrow, ncol, figsize=(4.3 * ncol, 3.4 * nrow), squeeze=False)
  for ax, roi in zip(axes.ravel(), rois):
    for rule in rules if len(dr) else ():
      d = dr[(dr.rule == rule) & (dr.roi == roi)].sort_values("epoch")
      if d.empty:
        continue
      x = np.concatenate([[0], d.epoch])
      ax.plot(x, np.concatenate([[0], d.delta_r]), marker="o", ms=3, color=colours[rule], label=rule)
      ax.fill_between(
        x, np.concatenate([[0], d.ci_low]), np.concatenate([[0], d.ci_high]), color=colours[rule], alpha=0.15, lw=0
      )
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(epochs)
    ax.set_xticklabels([str(e) for e in epochs])
    ax.set_xlabel("epoch")
    ax.set_ylabel("Δρ relative to epoch 0")
    ax.set_title(roi)
  for ax in axes.ravel()[len(rois) :]:
    ax.axis("off")
  h, l = axes.ravel()[0].get_legend_handles_labels()
  if l:
    fig.legend(h, l, loc="lower center", ncol=min(4, len(l)), frameon=False, fontsize=8)
  fig.suptitle(f"{title}\nchange from the initialised network (fixed layer), {ci_pct}% CI", fontsize=9)
  fig.tight_layout(rect=(0, 0.07, 1, 0.93))
  save(fig, "delta_r.png")
  if not heatmaps:
    return written

  # RDM heatmaps: each rule's fixed-layer model RDMs (first seed) at the chosen checkpoint, brain mean RDMs
  n = len(inputs["brain"].stimuli)
  i, j = rsa.pair_indices(n)
  c = inputs["conditions"]
  want = int(stats_config.rdm_epoch)
  panels = []
  for rule in rules:
    avail = sorted(set(c[c.rule == rule].epoch))
    epoch = avail[-1] if want < 0 or want not in avail else want
    panels.append((f"{rule}, epoch {epoch}, {READOUT_LAYERS[0]}", (rule, epoch, READOUT_LAYERS[0])))
  for r, roi in enumerate(rois):
    panels.append((f"brain {roi} (subject mean)", r))
  fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9), squeeze=False)
  full = probe.pair_set("all", n, inputs["brain"].item_runs())
  run_config = inputs["run_config"]
  for ax, (name, what) in zip(axes[0], panels):
    if isinstance(what, tuple):
      rule, epoch, layer = what
      with np.load(pathlib.Path(inputs["workdir"]) / "features" / rule / f"epoch_{epoch:04d}.npz") as z:
        f = z[f"{inputs['res']}px/{layer}"][0]
      vec = np.asarray(rsa.rdm_vectors(jnp.asarray(f), full, run_config.eval.rdm_metric))
    else:
      vec = inputs["brain"].rdm_vectors[:, what].mean(0)
    m = np.zeros((n, n))
    ranks = np.asarray(rsa.average_ranks(jnp.asarray(vec, jnp.float32))) / len(vec)  # percentile for display
    m[i, j] = ranks
    m[j, i] = ranks
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1)
    ax.set_title(name, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("stimulus")
  fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="dissimilarity (percentile)")
  fig.suptitle(f"{title}: RDMs, rank-transformed", fontsize=9)
  save(fig, "rdms.png")
  return written


def _conventions(run: dict, stats_config: Any, n_subjects: int, n_seeds: int) -> list[str]:
  b = int(stats_config.bootstrap_samples)
  ci_pct = int(round(100 * float(stats_config.ci)))
  rois = run["brain"].rois
  return [
    "## Conventions",
    "",
    f"* Comparator: `{stats_config.comparator}` (rsatoolbox name). Two group conventions, named: "
    f"**per-subject** ρ = comparator per subject, mean over the {n_subjects} subjects, then over {n_seeds} "
    "seeds (P1 v4, P3; the main number); **mean-RDM** ρ = comparator against the subject-mean RDM "
    "(element-wise mean of the subjects' dissimilarities), per seed, then the seed mean (P1 v1/v2). "
    "Averaging RDMs first gives higher ρ; the two are not interchangeable (study.md §7.7).",
    f"* Stimulus bootstrap: B = {b} resamples of the stimuli (seed {stats_config.bootstrap_seed}), the same "
    "resamples for every condition, resolution and pair set; duplicated stimuli's self-pairs dropped; the "
    f"pair set re-applied to each resample. {ci_pct}% percentile intervals. Two-sided bootstrap p = "
    "(2 min(#≤0, #≥0) + 1)/(B + 1).",
    "* Fixed layer per ROI: "
    + ", ".join(f"{k}→{v}" for k, v in dict(stats_config.layer_for_roi).items() if k in rois)
    + " (the study's Conv1→V1, Conv1→V2, Conv3→LOC, FC1→IT; V3/hV4→conv2 is brainalign's choice).",
    "* Best layer: per seed the layer with the highest subject-mean ρ (P3's convention), then the seed mean; "
    "re-chosen on every resample.",
    "* Noise ceiling: raw Nili bounds for the per-subject convention (lower = leave-one-subject-out, upper = "
    "each subject vs the pool of all), pooled as rsatoolbox pools for the comparator (ranks averaged for "
    "spearman/rho-a/tau-a). No score is divided by a ceiling.",
    f"* Tests at every milestone: each pair of rules (a rule evaluated at one checkpoint only, such as the "
    f"untrained `random`, enters every milestone with that checkpoint), and each rule's Δρ from epoch 0. "
    f"Multiple comparisons: BH-FDR and Holm within the declared family `stats.family = {stats_config.family}`: "
    f"{FAMILIES[str(stats_config.family)][1]}; each resolution × pair-set section separately; the "
    f"`family` column of the CSVs names each test's family. α = {stats_config.alpha}.",
    "* Sign-flip p: exact over all 2^K seed sign assignments, one-sided in the direction of the observed difference.",
    "* Partial RSA (pixel and luminance RDMs controlled): forms "
    + ", ".join(f"`{f}`" for f in partial_forms(stats_config))
    + " (`stats.partial_forms`; `closed` = Pearson r of "
    "the rank residuals, the textbook partial Spearman; `reference` = Spearman of the residuals, the "
    "reference implementation's, which re-sorts every residual on every resample and costs ~4x the rest "
    "of the bootstrap on CPU).",
    "",
  ]


def _section_markdown(inputs: dict, result: dict, stats_config: Any, figures: list[str], primary: bool) -> list[str]:
  t = result["tables"]
  rules = inputs["rules"]
  rois = list(inputs["brain"].rois)
  head = f"## {inputs['res']} px · `{inputs['pairs_name']}` pairs" + (" (primary)" if primary else "")
  lines = [
    head,
    "",
    f"{len(inputs['pairs'][0])} pairs of {len(inputs['brain'].stimuli)} stimuli; evaluation "
    f"resolution {inputs['res']} px.",
    "",
  ]
  main = t["main"]
  nc = t["noise_ceiling"].set_index("roi")
  lines += [
    "### Main table (per-subject convention)",
    "",
    "ρ [CI] per rule (its last checkpoint) and ROI, fixed layer. `*` = CI excludes 0; "
    f"`†` = difference from `{stats_config.reference_rule}` significant after BH-FDR (family above).",
    "",
    "| ROI | layer | noise ceiling lower [CI] | upper | "
    + " | ".join(f"{r} (ep {main[main.rule == r].epoch.iloc[0]})" for r in rules)
    + " |",
    "|" + "---|" * (4 + len(rules)),
  ]
  for roi in rois:
    cells = []
    for rule in rules:
      m = main[(main.rule == rule) & (main.roi == roi)].iloc[0]
      mark = ("*" if m.excludes_zero else "") + ("†" if m.differs_from_reference is True else "")
      cells.append(f"{_fmt(m.rho)} {_ci(m.ci_low, m.ci_high)}{mark}")
    lines.append(
      f"| {roi} | {main[main.roi == roi].layer.iloc[0]} | {_fmt(nc.loc[roi, 'lower_value'])} "
      f"{_ci(nc.loc[roi, 'lower_ci_low'], nc.loc[roi, 'lower_ci_high'])} | "
      f"{_fmt(nc.loc[roi, 'upper_value'])} | " + " | ".join(cells) + " |"
    )
  lines += [
    "",
    "Mean-RDM convention (P1 v1/v2): ρ with the subject-mean RDM, per seed, then the seed mean [CI]; "
    "per-subject value beside it:",
    "",
    "| ROI | " + " | ".join(rules) + " |",
    "|" + "---|" * (1 + len(rules)),
  ]
  for roi in rois:
    cells = [
      f"{_fmt(m.rho_mean_rdm)} {_ci(m.mean_rdm_ci_low, m.mean_rdm_ci_high)} (per-subject {_fmt(m.rho)})"
      for _, m in main[main.roi == roi].iterrows()
    ]
    lines.append(f"| {roi} | " + " | ".join(cells) + " |")
  lines += [
    "",
    "Best layer (per seed, then mean):",
    "",
    "| ROI | " + " | ".join(rules) + " |",
    "|" + "---|" * (1 + len(rules)),
  ]
  for roi in rois:
    cells = [
      f"{_fmt(m.best_layer_rho)} {_ci(m.best_ci_low, m.best_ci_high)} ({m.best_layers_per_seed})"
      for _, m in main[main.roi == roi].iterrows()
    ]
    lines.append(f"| {roi} | " + " | ".join(cells) + " |")
  pw = t["pairwise"]
  if len(pw):
    lines += [
      "",
      "### Pairwise differences (fixed layer, every milestone)",
      "",
      f"Family: {FAMILIES[str(stats_config.family)][1].split(';')[0]}.",
      "",
      "| milestone | ROI | A − B | Δρ [CI] | p (bootstrap) | q (BH) | p (Holm) | p (sign flip, seeds) | "
      "d (seeds) | d (subjects) |",
      "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in pw.iterrows():
      lines.append(
        f"| {r.epoch} | {r.roi} | {r.rule_a} (ep {r.epoch_a}) − {r.rule_b} (ep {r.epoch_b}) | "
        f"{_fmt(r['diff'], 4)} {_ci(r.ci_low, r.ci_high, 4)} | {_fmt(r.p_boot, 4)} | {_fmt(r.q_bh, 4)} | "
        f"{_fmt(r.p_holm, 4)} | {_fmt(r.p_signflip_seeds, 3)} | {_fmt(r.cohens_d_seeds, 2)} | "
        f"{_fmt(r.cohens_d_subjects, 2)} |"
      )
  dr = t["delta_r"]
  if len(dr):
    lines += [
      "",
      "### Δρ from epoch 0 (fixed layer)",
      "",
      f"Family: {FAMILIES[str(stats_config.family)][1].split('; for Δρ, ')[-1]}.",
      "",
      "| rule | epoch | ROI | ρ(0) | ρ | Δρ [CI] | % change [CI] | q (BH) | p (Holm) | p (sign flip) |",
      "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in dr.iterrows():
      lines.append(
        f"| {r.rule} | {r.epoch} | {r.roi} | {_fmt(r.rho_epoch0)} | {_fmt(r.rho)} | "
        f"{_fmt(r.delta_r, 4)} {_ci(r.ci_low, r.ci_high, 4)} | {_fmt(r.percent_change, 1)} "
        f"{_ci(r.pct_ci_low, r.pct_ci_high, 1)} | {_fmt(r.q_bh, 4)} | {_fmt(r.p_holm, 4)} | "
        f"{_fmt(r.p_signflip_seeds, 3)} |"
      )
  me = t["min_epoch"]
  if len(me):
    lines += [
      "",
      "### Epoch of the lowest alignment (fixed layer)",
      "",
      "| rule | ROI | epoch | CI | share of resamples |",
      "|---|---|---|---|---|",
    ]
    for _, r in me.iterrows():
      lines.append(
        f"| {r.rule} | {r.roi} | {r.min_epoch} | {_ci(r.ci_low, r.ci_high, 0)} | {r.share_of_resamples:.2f} |"
      )
  pr = t["partial_rsa"]
  if len(pr):
    forms = partial_forms(stats_config)
    px, lum = _partial_column("pixel", forms[0]), _partial_column("luminance", forms[0])
    other = f"; {', '.join(forms[1:])} form in the CSV" if len(forms) > 1 else ""
    lines += [
      "",
      f"### Partial RSA ({forms[0]} form [CI]{other})",
      "",
      "| rule | ROI | ρ | ρ partial (pixel) | ρ partial (luminance) | partial (pixel) − ρ |",
      "|---|---|---|---|---|---|",
    ]
    for _, r in pr.iterrows():
      lines.append(
        f"| {r.rule} | {r.roi} | {_fmt(r.rho)} | {_fmt(r[px])} {_ci(r[px + '_ci_low'], r[px + '_ci_high'])} "
        f"| {_fmt(r[lum])} {_ci(r[lum + '_ci_low'], r[lum + '_ci_high'])} | {_fmt(r.delta_pixel, 4)} "
        f"{_ci(r.delta_pixel_ci_low, r.delta_pixel_ci_high, 4)} |"
      )
  lines += ["", "### Figures", ""] + [f"![{f}](figures/{f})" for f in figures] + [""]
  return lines


def report(workdir: str, stats_config: Any) -> dict:
  """Writes <workdir>/report/ (report.md, tidy CSVs, figures/) for a finished run; returns {table: DataFrame}.

  One section per (resolution, pair set) the run evaluated, the primary one (stats.resolution, stats.pairs)
  first; the CSVs hold every section (columns `resolution`, `pairs`, `primary`).
  """
  workdir = pathlib.Path(workdir).expanduser().resolve()
  stats._check_method(stats_config.comparator)
  _check_family(str(stats_config.family))
  run = load_run(workdir)
  out = workdir / "report"
  data_label = run["data"]
  tables: dict[str, list] = {}
  body = []
  n_subjects = None
  for k, (res, pairs_name) in enumerate(sections(run["run_config"], stats_config)):
    inputs = load_inputs(workdir, stats_config, res=res, pairs_name=pairs_name, run=run)
    inputs["workdir"] = workdir
    n_subjects = inputs["brain_vectors"].shape[0]
    result = compute(inputs, stats_config)
    for name, df in result["tables"].items():
      df = df.copy()
      for pos, (col, val) in enumerate(
        (("data", data_label), ("resolution", res), ("pairs", pairs_name), ("primary", k == 0))
      ):
        df.insert(pos, col, val)
      tables.setdefault(name, []).append(df)
    title = (
      "SIMULATED brain (demo, not real fMRI)" if data_label == "simulated" else "THINGS-fMRI"
    ) + f" · {res} px · {pairs_name} pairs"
    figs = _figures(
      inputs,
      result,
      stats_config,
      out / "figures",
      title,
      suffix="" if k == 0 else f"_{res}px_{pairs_name}",
      heatmaps=k == 0,
    )
    body += _section_markdown(inputs, result, stats_config, figs, primary=k == 0)
  merged = {name: pd.concat(dfs, ignore_index=True) for name, dfs in tables.items()}
  for name, df in merged.items():
    io.write_csv(df, out / f"{name}.csv")
  lines = ["# brainalign report", ""]
  if data_label == "simulated":
    lines += [f"> ⚠ {SIMULATED_WARNING}", ""]
  lines += [f"**Data source:** {run['info'].get('data_description', data_label)}", ""]
  lines += _conventions(run, stats_config, n_subjects, len(run["run_config"].seeds))
  lines += body
  lines += ["Tables (every section, tidy): " + ", ".join(f"`{k}.csv`" for k in merged) + "."]
  with io.atomic_path(out / "report.md") as tmp:
    tmp.write_text("\n".join(lines) + "\n")
  logging.info("Report written to %s", out)
  return merged
