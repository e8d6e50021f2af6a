"""The report step: a finished run's features + the brain RDMs -> statistics, tables, figures, a markdown page.

  python main.py --mode=report --workdir=runs/demo [--config=configs/demo.py --config.stats.bootstrap_samples=200]

The run's own settings (rules, seeds, resolutions, pair sets, brain source) come from `<workdir>/run_info.json`;
the statistics settings from the `stats` block of the `--config` given to the report (configs/common.py).

Everything is computed from ONE compiled bootstrap call (`stats.bootstrap_rsa`) over all conditions
(rule x seed x milestone x layer) x ROIs x subjects, whose resample row 0 is the data itself. Every quantity
below is a NumPy reduction of that [B + 1, ...] grid, so each has a percentile CI from the same resamples.

Conventions (also written on the page):
  * rho = per-subject comparator value, averaged over subjects, then over seeds (P1 v4 / P3 convention).
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
import matplotlib.pyplot as plt  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from absl import logging  # noqa: E402

from brainalign import io, probe, rsa, stats  # noqa: E402
from brainalign.data import images  # noqa: E402
from brainalign.figures import PALETTE  # noqa: E402
from brainalign.models import READOUT_LAYERS  # noqa: E402

SIMULATED_WARNING = ("**SIMULATED brain data** (brainalign demo): not real fMRI. These numbers show what the "
                     "pipeline computes, not findings about the brain.")


def _epochs_of(feat_dir: pathlib.Path) -> list[int]:
  return sorted(int(p.stem.split("_")[1]) for p in feat_dir.glob("epoch_*.npz"))


def _resolve_pairs(run_config: Any, requested: str) -> str:
  evaluated = list(run_config.eval.pair_sets)
  if requested == "auto":
    return "cross_run" if "cross_run" in evaluated else evaluated[0]
  return requested


def load_inputs(workdir: pathlib.Path, stats_config: Any) -> dict:
  """Reads run_info.json, the brain RDMs and every rule's saved features; builds the condition grid.

  Returns a dict with: run_config, data, description, brain, res, pairs_name, pairs (i, j), brain_vectors
  [S, R, P], model_vectors [V, P], conditions (DataFrame of V rows: rule, seed, epoch, layer), rules,
  seeds, epochs (union), images_dir.
  """
  info_path = workdir / "run_info.json"
  if not info_path.exists():
    raise FileNotFoundError(f"{info_path} not found: --workdir must be the folder of a finished run "
                            "(python main.py --workdir=...)")
  info = json.loads(info_path.read_text())
  run_config = ml_collections.ConfigDict(info["config"])
  data, brain, images_dir = probe.load_brain(run_config.brain)
  res = int(stats_config.resolution) or max(int(r) for r in run_config.eval.resolutions)
  if res not in [int(r) for r in run_config.eval.resolutions]:
    raise ValueError(f"stats.resolution={res} px was not evaluated by the run (eval.resolutions="
                     f"{tuple(run_config.eval.resolutions)})")
  pairs_name = _resolve_pairs(run_config, stats_config.pairs)
  n = len(brain.stimuli)
  i, j = probe.pair_set(pairs_name, n, brain.runs)
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
  return dict(run_config=run_config, data=data, description=info.get("data_description", data), brain=brain,
              res=res, pairs_name=pairs_name, pairs=(i, j), brain_vectors=brain_vectors,
              model_vectors=np.concatenate(vectors).astype(np.float32), conditions=pd.DataFrame(rows),
              rules=list(run_config.rules), seeds=[int(s) for s in run_config.seeds],
              epochs=sorted({r["epoch"] for r in rows}), images_dir=images_dir)


def _grid(inputs: dict, rho_subject_mean: np.ndarray) -> np.ndarray:
  """[B + 1, V, R] -> [B + 1, rules, seeds, epochs, layers, R], NaN where a rule lacks an epoch."""
  c = inputs["conditions"]
  rules, seeds, epochs = inputs["rules"], inputs["seeds"], inputs["epochs"]
  out = np.full((rho_subject_mean.shape[0], len(rules), len(seeds), len(epochs), len(READOUT_LAYERS),
                 rho_subject_mean.shape[-1]), np.nan)
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


def compute(inputs: dict, stats_config: Any) -> dict:
  """Runs the bootstrap and reduces it to the report's tables. Returns {name: DataFrame} plus arrays."""
  n = len(inputs["brain"].stimuli)
  b_count = int(stats_config.bootstrap_samples)
  resamples = jnp.concatenate([stats.identity_resample(n), stats.draw_resamples(
      jax.random.key(int(stats_config.bootstrap_seed)), b_count, n)])
  out = stats.bootstrap_rsa(inputs["model_vectors"], inputs["brain_vectors"], inputs["pairs"], resamples, n=n,
                            method=stats_config.comparator, batch_size=int(stats_config.batch_size),
                            model_chunk=int(stats_config.model_chunk))
  rho_subj = np.asarray(out["rho"], np.float64)  # [B + 1, V, R, S]
  lower, upper = (np.asarray(out[k], np.float64) for k in ("noise_lower", "noise_upper"))
  grid = _grid(inputs, rho_subj.mean(-1))  # [B + 1, Ru, Se, E, L, R]
  per_subject = _grid(inputs, np.moveaxis(rho_subj[0], -1, 0))  # point estimates [Subj, Ru, Se, E, L, R]

  rules, seeds, epochs = inputs["rules"], inputs["seeds"], inputs["epochs"]
  rois = list(inputs["brain"].rois)
  ci, alpha = float(stats_config.ci), float(stats_config.alpha)
  mapping = dict(stats_config.layer_for_roi)
  missing = [r for r in rois if r not in mapping]
  if missing:
    raise ValueError(f"stats.layer_for_roi has no layer for ROI(s) {missing}")
  fixed_idx = np.array([READOUT_LAYERS.index(mapping[r]) for r in rois])
  fixed_seed = np.stack([grid[..., fixed_idx[k], k] for k in range(len(rois))], axis=-1)  # [B+1, Ru, Se, E, R]
  fixed = fixed_seed.mean(axis=2)  # [B+1, Ru, E, R]
  best_seed = grid.max(axis=4)  # [B+1, Ru, Se, E, R] (NaN if any layer NaN)
  best = best_seed.mean(axis=2)
  best_layer = np.argmax(np.nan_to_num(grid[0], nan=-np.inf), axis=3)  # [Ru, Se, E, R] point choice per seed
  c = inputs["conditions"]
  last = {ru: int(c[c.rule == ru].epoch.max()) for ru in rules}  # each rule's last checkpoint
  last_idx = np.array([epochs.index(last[r]) for r in rules])
  tables = {}

  # noise ceiling
  nc = pd.DataFrame({"roi": rois, **_ci_cols(lower, ci, "lower_"), **_ci_cols(upper, ci, "upper_")})
  nc.insert(1, "n_pairs", len(inputs["pairs"][0]))
  tables["noise_ceiling"] = nc

  # trajectories (every rule, epoch, ROI; fixed layer and best layer)
  traj = []
  for kind, arr in (("fixed", fixed), ("best", best)):
    cols = _ci_cols(arr, ci)
    for a, rule in enumerate(rules):
      for e, epoch in enumerate(epochs):
        if np.isnan(arr[0, a, e]).all():
          continue
        for r, roi in enumerate(rois):
          traj.append(dict(rule=rule, epoch=epoch, roi=roi, layer=mapping[roi] if kind == "fixed" else "best",
                           layer_kind=kind, rho=cols["value"][a, e, r], ci_low=cols["ci_low"][a, e, r],
                           ci_high=cols["ci_high"][a, e, r], seed_sd=np.std(
                               (fixed_seed if kind == "fixed" else best_seed)[0, a, :, e, r], ddof=1)
                           if len(seeds) > 1 else np.nan))
  tables["trajectory"] = pd.DataFrame(traj)

  # full layer x ROI matrix at each rule's last checkpoint
  rows = []
  for a, rule in enumerate(rules):
    g = grid[:, a, :, last_idx[a]].mean(axis=1)  # [B+1, L, R]
    cols = _ci_cols(g, ci)
    for l, layer in enumerate(READOUT_LAYERS):
      for r, roi in enumerate(rois):
        rows.append(dict(rule=rule, epoch=last[rule], layer=layer, roi=roi, rho=cols["value"][l, r],
                         ci_low=cols["ci_low"][l, r], ci_high=cols["ci_high"][l, r],
                         fixed=layer == mapping[roi]))
  tables["layer_roi"] = pd.DataFrame(rows)

  # pairwise differences between rules at their last checkpoints; family = all rule pairs x ROIs
  fin = np.stack([fixed[:, a, last_idx[a]] for a in range(len(rules))], axis=1)  # [B+1, Ru, R]
  fin_seed = np.stack([fixed_seed[:, a, :, last_idx[a]] for a in range(len(rules))], axis=1)  # [B+1, Ru, Se, R]
  fin_subj = np.stack([np.stack([per_subject[:, a, :, last_idx[a], fixed_idx[r], r].mean(axis=1)
                                 for r in range(len(rois))], -1) for a in range(len(rules))], 1)  # [Subj, Ru, R]
  rows = []
  for a in range(len(rules)):
    for b in range(a + 1, len(rules)):
      d = fin[:, a] - fin[:, b]  # [B+1, R]
      lo, hi = stats.percentile_ci(d[1:], ci)
      p_boot = stats.bootstrap_p_two_sided(d[1:])
      dseed = fin_seed[0, a] - fin_seed[0, b]  # [Se, R]
      direction = np.sign(d[0])
      p_flip = stats.sign_flip_p((dseed * np.where(direction == 0, 1, direction)).T)
      d_seeds = stats.cohens_d(fin_seed[0, a].T, fin_seed[0, b].T) if len(seeds) > 1 else np.full(len(rois), np.nan)
      d_subj = stats.cohens_d(fin_subj[:, a].T, fin_subj[:, b].T)
      for r, roi in enumerate(rois):
        rows.append(dict(roi=roi, layer=mapping[roi], rule_a=rules[a], epoch_a=last[rules[a]], rule_b=rules[b],
                         epoch_b=last[rules[b]], diff=d[0, r], ci_low=lo[r], ci_high=hi[r], p_boot=p_boot[r],
                         p_signflip_seeds=p_flip[r], cohens_d_seeds=d_seeds[r], cohens_d_subjects=d_subj[r]))
  pw = pd.DataFrame(rows)
  if len(pw):
    pw["q_bh"] = stats.bh_fdr(pw.p_boot.to_numpy())
    pw["p_holm"] = stats.holm(pw.p_boot.to_numpy())
    pw["significant_bh"] = pw.q_bh <= alpha
  tables["pairwise"] = pw

  # delta r from epoch 0 per milestone; family = rules x ROIs at each milestone
  rows = []
  e0 = epochs.index(0) if 0 in epochs else None
  for a, rule in enumerate(rules):
    for e, epoch in enumerate(epochs):
      if e0 is None or epoch == 0 or np.isnan(fixed[0, a, e]).all():
        continue
      d = fixed[:, a, e] - fixed[:, a, e0]
      lo, hi = stats.percentile_ci(d[1:], ci)
      pct = 100.0 * d / fixed[:, a, e0]
      plo, phi = stats.percentile_ci(pct[1:], ci)
      dseed = fixed_seed[0, a, :, e] - fixed_seed[0, a, :, e0]  # [Se, R]
      direction = np.where(np.sign(d[0]) == 0, 1, np.sign(d[0]))
      p_flip = stats.sign_flip_p((dseed * direction).T)
      dz = stats.cohens_dz(dseed.T) if len(seeds) > 1 else np.full(len(rois), np.nan)
      p_boot = stats.bootstrap_p_two_sided(d[1:])
      for r, roi in enumerate(rois):
        rows.append(dict(rule=rule, epoch=epoch, roi=roi, layer=mapping[roi], rho_epoch0=fixed[0, a, e0, r],
                         rho=fixed[0, a, e, r], delta_r=d[0, r], ci_low=lo[r], ci_high=hi[r],
                         percent_change=pct[0, r], pct_ci_low=plo[r], pct_ci_high=phi[r], p_boot=p_boot[r],
                         p_signflip_seeds=p_flip[r], cohens_dz_seeds=dz[r]))
  dr = pd.DataFrame(rows)
  if len(dr):
    for col, fn in (("q_bh", stats.bh_fdr), ("p_holm", stats.holm)):
      dr[col] = np.nan
      for epoch, idx in dr.groupby("epoch").groups.items():
        dr.loc[idx, col] = fn(dr.loc[idx, "p_boot"].to_numpy())
    dr["significant_bh"] = dr.q_bh <= alpha
  tables["delta_r"] = dr

  # the epoch at which each rule's alignment is lowest (per ROI), re-chosen on every resample
  rows = []
  for a, rule in enumerate(rules):
    have = [e for e in range(len(epochs)) if not np.isnan(fixed[0, a, e]).all()]
    if len(have) < 2:
      continue
    ep = np.array(epochs)[have]
    arg = ep[np.argmin(fixed[:, a][:, have], axis=1)]  # [B+1, R] epoch of the minimum
    lo, hi = stats.percentile_ci(arg[1:].astype(float), ci)
    for r, roi in enumerate(rois):
      rows.append(dict(rule=rule, roi=roi, layer=mapping[roi], min_epoch=int(arg[0, r]), ci_low=lo[r], ci_high=hi[r],
                       share_of_resamples=float(np.mean(arg[1:, r] == arg[0, r]))))
  tables["min_epoch"] = pd.DataFrame(rows)

  # main table: each rule at its last checkpoint, fixed layer, CI, ceiling, marks
  ref = stats_config.reference_rule
  rows = []
  for a, rule in enumerate(rules):
    lo, hi = stats.percentile_ci(fin[1:, a], ci)
    blo, bhi = stats.percentile_ci(best[1:, a, last_idx[a]], ci)
    for r, roi in enumerate(rois):
      sig_ref = np.nan
      if ref in rules and rule != ref and len(pw):
        m = pw[(pw.roi == roi) & (((pw.rule_a == rule) & (pw.rule_b == ref)) | ((pw.rule_a == ref) & (pw.rule_b == rule)))]
        sig_ref = bool(m.significant_bh.iloc[0]) if len(m) else np.nan
      layers_chosen = [READOUT_LAYERS[k] for k in best_layer[a, :, last_idx[a], r]]
      rows.append(dict(rule=rule, epoch=last[rule], roi=roi, layer=mapping[roi], rho=fin[0, a, r], ci_low=lo[r],
                       ci_high=hi[r], excludes_zero=bool(lo[r] > 0 or hi[r] < 0), differs_from_reference=sig_ref,
                       best_layer_rho=best[0, a, last_idx[a], r], best_ci_low=blo[r], best_ci_high=bhi[r],
                       best_layers_per_seed="/".join(layers_chosen),
                       noise_lower=lower[0, r], noise_upper=upper[0, r]))
  tables["main"] = pd.DataFrame(rows)
  tables["partial_rsa"] = _partial(inputs, stats_config, last)
  return {"tables": tables, "fixed": fixed, "best": best, "lower": lower, "upper": upper}


def _partial(inputs: dict, stats_config: Any, last: dict) -> pd.DataFrame:
  """Partial Spearman (pixel RDM, luminance RDM) at each rule's last checkpoint, fixed layer; point estimates."""
  brain = inputs["brain"]
  try:
    layout = inputs["run_config"].brain.get("image_layout", "") or (
        "flat" if inputs["run_config"].brain.source == "rdms" else "things")
    try:
      paths = images.stimulus_paths(inputs["images_dir"], brain.stimuli, layout)
    except TypeError:  # older stimulus_paths(images_dir, stimuli)
      paths = images.stimulus_paths(inputs["images_dir"], brain.stimuli)
    imgs = images.load_images(paths, inputs["res"])
  except (OSError, ValueError, KeyError) as e:
    logging.warning("Partial RSA skipped: stimulus images not readable (%s)", e)
    return pd.DataFrame()
  controls = {"pixel": stats.pixel_rdm_vector(imgs, inputs["pairs"]),
              "luminance": stats.luminance_rdm_vector(imgs, inputs["pairs"])}
  c = inputs["conditions"]
  mapping = dict(stats_config.layer_for_roi)
  rois = list(brain.rois)
  s_count = inputs["brain_vectors"].shape[0]
  y = inputs["brain_vectors"].reshape(-1, inputs["brain_vectors"].shape[-1])  # [S * R, P]
  rows = []
  for rule in inputs["rules"]:
    for r, roi in enumerate(rois):
      sel = np.flatnonzero(((c.rule == rule) & (c.epoch == last[rule]) & (c.layer == mapping[roi])).to_numpy())
      x = inputs["model_vectors"][sel]  # [Se, P]
      plain = np.asarray(stats.compare(x, y)).reshape(len(sel), s_count, -1)[:, :, r].mean()
      row = dict(rule=rule, epoch=last[rule], roi=roi, layer=mapping[roi], rho=plain)
      for name, z in controls.items():
        for form in ("reference", "closed"):
          v = np.asarray(stats.partial_spearman(x, y, z, form=form)).reshape(len(sel), s_count, -1)[:, :, r]
          row[f"rho_partial_{name}" + ("" if form == "reference" else "_closed")] = v.mean()
      row["delta_pixel"] = row["rho_partial_pixel"] - plain
      rows.append(row)
  return pd.DataFrame(rows)


def _fmt(v: float, digits: int = 3) -> str:
  return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _ci(lo: float, hi: float, digits: int = 3) -> str:
  return f"[{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def _figures(inputs: dict, result: dict, stats_config: Any, folder: pathlib.Path, title: str) -> list[str]:
  """Writes the figures; returns their file names."""
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
      ax.axhline(nc.loc[roi, "lower_value"], color="0.4", ls="--", lw=1, zorder=0,
                 label="noise ceiling, lower bound (band: CI)")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(epochs)
    ax.set_xticklabels([str(e) for e in epochs])
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{stats_config.comparator} ρ (model vs brain RDM)")
    ax.set_title(roi)

  def save(fig, name):
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
  for ax in axes.ravel()[len(rois):]:
    ax.axis("off")
  h, l = axes.ravel()[0].get_legend_handles_labels()
  fig.legend(h, l, loc="lower center", ncol=min(4, len(l)), frameon=False, fontsize=8)
  fig.suptitle(f"{title}\nfixed layer per ROI, {ci_pct}% CI; grey = noise ceiling lower bound", fontsize=9)
  fig.tight_layout(rect=(0, 0.07, 1, 0.93))
  save(fig, "all_rois.png")

  dr = result["tables"]["delta_r"]
  fig, axes = plt.subplots(nrow, ncol, figsize=(4.3 * ncol, 3.4 * nrow), squeeze=False)
  for ax, roi in zip(axes.ravel(), rois):
    for rule in rules:
      d = dr[(dr.rule == rule) & (dr.roi == roi)].sort_values("epoch")
      if d.empty:
        continue
      x = np.concatenate([[0], d.epoch])
      ax.plot(x, np.concatenate([[0], d.delta_r]), marker="o", ms=3, color=colours[rule], label=rule)
      ax.fill_between(x, np.concatenate([[0], d.ci_low]), np.concatenate([[0], d.ci_high]), color=colours[rule],
                      alpha=0.15, lw=0)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(epochs)
    ax.set_xticklabels([str(e) for e in epochs])
    ax.set_xlabel("epoch")
    ax.set_ylabel("Δρ relative to epoch 0")
    ax.set_title(roi)
  for ax in axes.ravel()[len(rois):]:
    ax.axis("off")
  h, l = axes.ravel()[0].get_legend_handles_labels()
  if l:
    fig.legend(h, l, loc="lower center", ncol=min(4, len(l)), frameon=False, fontsize=8)
  fig.suptitle(f"{title}\nchange from the initialised network (fixed layer), {ci_pct}% CI", fontsize=9)
  fig.tight_layout(rect=(0, 0.07, 1, 0.93))
  save(fig, "delta_r.png")

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
  full = probe.pair_set("all", n, inputs["brain"].runs)
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


def _markdown(inputs: dict, result: dict, stats_config: Any, figures: list[str]) -> str:
  t = result["tables"]
  data = inputs["data"]
  lines = ["# brainalign report", ""]
  if data == "simulated":
    lines += [f"> ⚠ {SIMULATED_WARNING}", ""]
  lines += [f"**Data source:** {inputs['description']}", ""]
  b = int(stats_config.bootstrap_samples)
  ci_pct = int(round(100 * float(stats_config.ci)))
  lines += ["## Conventions", "",
            f"* Comparator: `{stats_config.comparator}` (rsatoolbox name); per subject, then mean over the "
            f"{inputs['brain_vectors'].shape[0]} subjects, then over {len(inputs['seeds'])} seeds.",
            f"* Pairs: `{inputs['pairs_name']}` ({len(inputs['pairs'][0])} pairs of {len(inputs['brain'].stimuli)} "
            f"stimuli); evaluation resolution {inputs['res']} px.",
            f"* Stimulus bootstrap: B = {b} resamples of the stimuli (seed {stats_config.bootstrap_seed}), shared by "
            f"every condition; duplicated stimuli's self-pairs dropped; the pair set re-applied to each resample. "
            f"{ci_pct}% percentile intervals. Two-sided bootstrap p = (2 min(#≤0, #≥0) + 1)/(B + 1).",
            "* Fixed layer per ROI: " + ", ".join(f"{k}→{v}" for k, v in dict(stats_config.layer_for_roi).items()
                                                 if k in inputs["brain"].rois)
            + " (the study's Conv1→V1, Conv1→V2, Conv3→LOC, FC1→IT; V3/hV4→conv2 is brainalign's choice).",
            "* Best layer: per seed the layer with the highest subject-mean ρ (P3's convention), then the seed mean; "
            "re-chosen on every resample.",
            "* Noise ceiling: raw Nili bounds (lower = leave-one-subject-out, upper = each subject vs the pool of all), "
            "pooled as rsatoolbox pools for the comparator (ranks averaged for spearman/rho-a). No score is divided "
            "by a ceiling.",
            f"* Multiple comparisons: BH-FDR and Holm over the declared family ({stats_config.family}: all rule pairs "
            f"× ROIs at the compared checkpoints; for Δr, all rules × ROIs at each milestone); α = {stats_config.alpha}.",
            "* Sign-flip p: exact over all 2^K seed sign assignments, one-sided in the direction of the observed "
            "difference.", ""]
  lines += ["## Main table", "",
            "ρ [CI] per rule (its last checkpoint) and ROI, fixed layer. `*` = CI excludes 0; "
            f"`†` = difference from `{stats_config.reference_rule}` significant after BH-FDR.", ""]
  main = t["main"]
  rules = inputs["rules"]
  rois = list(inputs["brain"].rois)
  nc = t["noise_ceiling"].set_index("roi")
  lines += ["| ROI | layer | noise ceiling lower [CI] | upper | " + " | ".join(
      f"{r} (ep {main[main.rule == r].epoch.iloc[0]})" for r in rules) + " |",
            "|" + "---|" * (4 + len(rules))]
  for roi in rois:
    cells = []
    for rule in rules:
      m = main[(main.rule == rule) & (main.roi == roi)].iloc[0]
      mark = ("*" if m.excludes_zero else "") + ("†" if m.differs_from_reference is True else "")
      cells.append(f"{_fmt(m.rho)} {_ci(m.ci_low, m.ci_high)}{mark}")
    lines.append(f"| {roi} | {main[main.roi == roi].layer.iloc[0]} | {_fmt(nc.loc[roi, 'lower_value'])} "
                 f"{_ci(nc.loc[roi, 'lower_ci_low'], nc.loc[roi, 'lower_ci_high'])} | "
                 f"{_fmt(nc.loc[roi, 'upper_value'])} | " + " | ".join(cells) + " |")
  lines += ["", "Best layer (per seed, then mean):", "",
            "| ROI | " + " | ".join(rules) + " |", "|" + "---|" * (1 + len(rules))]
  for roi in rois:
    cells = [f"{_fmt(m.best_layer_rho)} {_ci(m.best_ci_low, m.best_ci_high)} ({m.best_layers_per_seed})"
             for _, m in main[main.roi == roi].iterrows()]
    lines.append(f"| {roi} | " + " | ".join(cells) + " |")
  pw = t["pairwise"]
  if len(pw):
    lines += ["", "## Pairwise differences (fixed layer, last checkpoints)", "",
              "| ROI | A − B | Δρ [CI] | p (bootstrap) | q (BH) | p (Holm) | p (sign flip, seeds) | d (seeds) | d (subjects) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for _, r in pw.iterrows():
      lines.append(f"| {r.roi} | {r.rule_a} − {r.rule_b} | {_fmt(r['diff'], 4)} {_ci(r.ci_low, r.ci_high, 4)} | "
                   f"{_fmt(r.p_boot, 4)} | {_fmt(r.q_bh, 4)} | {_fmt(r.p_holm, 4)} | {_fmt(r.p_signflip_seeds, 3)} | "
                   f"{_fmt(r.cohens_d_seeds, 2)} | {_fmt(r.cohens_d_subjects, 2)} |")
  dr = t["delta_r"]
  if len(dr):
    lines += ["", "## Δρ from epoch 0 (fixed layer)", "",
              "| rule | epoch | ROI | ρ(0) | ρ | Δρ [CI] | % change [CI] | q (BH) | p (Holm) | p (sign flip) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in dr.iterrows():
      lines.append(f"| {r.rule} | {r.epoch} | {r.roi} | {_fmt(r.rho_epoch0)} | {_fmt(r.rho)} | "
                   f"{_fmt(r.delta_r, 4)} {_ci(r.ci_low, r.ci_high, 4)} | {_fmt(r.percent_change, 1)} "
                   f"{_ci(r.pct_ci_low, r.pct_ci_high, 1)} | {_fmt(r.q_bh, 4)} | {_fmt(r.p_holm, 4)} | "
                   f"{_fmt(r.p_signflip_seeds, 3)} |")
  me = t["min_epoch"]
  if len(me):
    lines += ["", "## Epoch of the lowest alignment (fixed layer)", "",
              "| rule | ROI | epoch | CI | share of resamples |", "|---|---|---|---|---|"]
    for _, r in me.iterrows():
      lines.append(f"| {r.rule} | {r.roi} | {r.min_epoch} | {_ci(r.ci_low, r.ci_high, 0)} | "
                   f"{r.share_of_resamples:.2f} |")
  pr = t["partial_rsa"]
  if len(pr):
    lines += ["", "## Partial RSA (point estimates; reference form, closed form in the CSV)", "",
              "| rule | ROI | ρ | ρ partial (pixel) | ρ partial (luminance) |", "|---|---|---|---|---|"]
    for _, r in pr.iterrows():
      lines.append(f"| {r.rule} | {r.roi} | {_fmt(r.rho)} | {_fmt(r.rho_partial_pixel)} | "
                   f"{_fmt(r.rho_partial_luminance)} |")
  lines += ["", "## Figures", ""] + [f"![{f}](figures/{f})" for f in figures]
  lines += ["", "Tables: " + ", ".join(f"`{k}.csv`" for k in t) + "."]
  return "\n".join(lines) + "\n"


def report(workdir: str, stats_config: Any) -> dict:
  """Writes <workdir>/report/ (report.md, tidy CSVs, figures/) for a finished run; returns {table: DataFrame}."""
  workdir = pathlib.Path(workdir).expanduser().resolve()
  stats._check_method(stats_config.comparator)  # pylint: disable=protected-access
  inputs = load_inputs(workdir, stats_config)
  inputs["workdir"] = workdir
  result = compute(inputs, stats_config)
  out = workdir / "report"
  data_label = inputs["data"]
  for name, df in result["tables"].items():
    df = df.copy()
    df.insert(0, "data", data_label)
    io.write_csv(df, out / f"{name}.csv")
  title = ("SIMULATED brain (demo, not real fMRI)" if data_label == "simulated" else "THINGS-fMRI") + \
          f" · {inputs['res']} px · {inputs['pairs_name']} pairs"
  figs = _figures(inputs, result, stats_config, out / "figures", title)
  with io.atomic_path(out / "report.md") as tmp:
    tmp.write_text(_markdown(inputs, result, stats_config, figs))
  logging.info("Report written to %s", out)
  return result["tables"]
