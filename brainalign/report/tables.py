"""The report's tables: short pure functions of a `Section` that return tidy DataFrames.

Conventions: rho = per-subject comparator value, averaged over subjects, then over seeds (P1 v4 / P3);
rho_mean_rdm = against the subject-mean RDM, per seed, then the seed mean (P1 v1/v2). Each ROI is compared
with its mapped layer (`stats.layer_for_roi`) or, without a mapping, with the best layer per seed (re-chosen
on every resample, so the CI is that of the whole procedure). Every CI is a percentile interval over the
resample rows 1..B of the same arrays.
"""

import numpy as np
import pandas as pd

from brainalign import stats
from brainalign.models import READOUT_LAYERS
from brainalign.report import settings as settings_lib
from brainalign.report.section import Section


def ci_cols(samples: np.ndarray, ci: float, prefix: str = "") -> dict:
  """samples [B + 1, ...]: row 0 = estimate, rows 1.. = bootstrap -> {value, ci_low, ci_high} arrays."""
  lo, hi = stats.percentile_ci(samples[1:], ci)
  return {f"{prefix}value": samples[0], f"{prefix}ci_low": lo, f"{prefix}ci_high": hi}


def tests_frame(meta: dict, rois: list, cols: dict) -> pd.DataFrame:
  """Tidy rows of T tests x R ROIs: meta {name: [T]}, cols {name: [T, R]} -> DataFrame (T x R rows)."""
  t_count = len(next(iter(meta.values()))) if meta else 0
  t_idx, r_idx = (g.ravel() for g in np.meshgrid(np.arange(t_count), np.arange(len(rois)), indexing="ij"))
  out = {k: np.asarray(v, dtype=object if isinstance(v[0], str) else None)[t_idx] for k, v in meta.items()}
  out["roi"] = np.asarray(rois, dtype=object)[r_idx]
  out.update({k: np.asarray(v).reshape(t_count, len(rois))[t_idx, r_idx] for k, v in cols.items()})
  return pd.DataFrame(out)


def _insert_layer(df: pd.DataFrame, sec: Section) -> pd.DataFrame:
  df.insert(df.columns.get_loc("roi") + 1, "layer", df.roi.map(sec.layer_label))
  return df


def noise_ceiling(sec: Section, ci: float) -> pd.DataFrame:
  """Per ROI: lower and upper bound with CIs (NaN without a ceiling), and the number of pairs."""
  nc = pd.DataFrame({"roi": sec.rois, **ci_cols(sec.lower, ci, "lower_"), **ci_cols(sec.upper, ci, "upper_")})
  nc.insert(1, "n_pairs", sec.n_pairs)
  return nc


def trajectory(sec: Section, ci: float) -> pd.DataFrame:
  """Every rule × checkpoint × ROI, for the ROI's layer ("fixed") and the best layer; both conventions."""
  frames = []
  for kind in ("fixed", "best"):
    pick = sec.selected if kind == "fixed" else (lambda a: np.max(a, axis=-2))
    seed_level = pick(sec.rho)  # [B1, Ru, Se, E, R]
    arr, arr_mr = seed_level.mean(axis=2), pick(sec.rho_mean_rdm).mean(axis=2)
    cols, cols_mr = ci_cols(arr, ci), ci_cols(arr_mr, ci)
    sd = np.std(seed_level[0], axis=1, ddof=1) if len(sec.seeds) > 1 else np.full(arr.shape[1:], np.nan)
    a_idx, e_idx = np.nonzero(sec.have)
    meta = dict(rule=[sec.rules[a] for a in a_idx], epoch=[sec.epochs[e] for e in e_idx])
    values = dict(
      rho=cols["value"],
      ci_low=cols["ci_low"],
      ci_high=cols["ci_high"],
      seed_sd=sd,
      rho_mean_rdm=cols_mr["value"],
      mean_rdm_ci_low=cols_mr["ci_low"],
      mean_rdm_ci_high=cols_mr["ci_high"],
    )
    df = tests_frame(meta, sec.rois, {k: v[a_idx, e_idx] for k, v in values.items()})
    df.insert(3, "layer", df.roi.map(sec.layer_label) if kind == "fixed" else "best")
    df.insert(4, "layer_kind", kind)
    frames.append(df)
  return pd.concat(frames, ignore_index=True)


def layer_roi(sec: Section, ci: float) -> pd.DataFrame:
  """The full layer × ROI matrix of each rule at its last checkpoint (seed mean) with CIs."""
  last = sec.last_idx
  ru, se = np.arange(len(sec.rules))[:, None], np.arange(len(sec.seeds))[None, :]
  g = sec.rho[:, ru, se, last[:, None]].mean(axis=2)  # [B1, Ru, Se, L, R] -> [B1, Ru, L, R]
  cols = ci_cols(g, ci)
  a_idx, l_idx = (
    x.ravel() for x in np.meshgrid(np.arange(len(sec.rules)), np.arange(len(READOUT_LAYERS)), indexing="ij")
  )
  meta = dict(
    rule=[sec.rules[a] for a in a_idx],
    epoch=[sec.epochs[last[a]] for a in a_idx],
    layer=[READOUT_LAYERS[la] for la in l_idx],
  )
  df = tests_frame(
    meta,
    sec.rois,
    {k: cols[c][a_idx, l_idx] for k, c in (("rho", "value"), ("ci_low", "ci_low"), ("ci_high", "ci_high"))},
  )
  df["fixed"] = df.layer == df.roi.map(lambda r: sec.layer_for.get(r))
  return df


def _pairwise_tests(sec: Section) -> list[tuple]:
  """(milestone, a, epoch index of a, b, epoch index of b) of every rule pair at every milestone; a rule evaluated
  at one checkpoint only (the untrained network) enters every milestone with that checkpoint."""
  have, static, last = sec.have, sec.static, sec.last_idx
  tests = []
  for e, epoch in enumerate(sec.epochs):
    for a in range(len(sec.rules)):
      for b in range(a + 1, len(sec.rules)):
        ea = e if have[a, e] else (last[a] if static[a] else None)
        eb = e if have[b, e] else (last[b] if static[b] else None)
        if ea is None or eb is None or (static[a] and static[b] and epoch != max(sec.epochs[ea], sec.epochs[eb])):
          continue
        tests.append((epoch, a, ea, b, eb))
  return tests


def _paired_stats(d: np.ndarray, sa: np.ndarray, sb: np.ndarray, ci: float) -> dict:
  """d [B1, T, R] differences; sa, sb [T, Se, R] seed-level point values -> CI, bootstrap p, sign-flip p, d."""
  lo, hi = stats.percentile_ci(d[1:], ci)
  direction = np.where(np.sign(d[0]) == 0, 1, np.sign(d[0]))  # [T, R]
  p_flip = stats.sign_flip_p(np.moveaxis((sa - sb) * direction[:, None], 1, -1))
  return dict(diff=d[0], ci_low=lo, ci_high=hi, p_boot=stats.bootstrap_p_two_sided(d[1:]), p_signflip_seeds=p_flip)


def pairwise(sec: Section, s) -> pd.DataFrame:
  """Differences between rules at every milestone (ROI's layer), corrected within `stats.family`."""
  tests = _pairwise_tests(sec)
  if not tests:
    return pd.DataFrame()
  ep_t, a_t, ea_t, b_t, eb_t = (np.array(x) for x in zip(*tests))
  seed_level = sec.selected(sec.rho)  # [B1, Ru, Se, E, R]
  fixed = seed_level.mean(axis=2)
  sa, sb = seed_level[0][a_t, :, ea_t], seed_level[0][b_t, :, eb_t]  # [T, Se, R]
  cols = _paired_stats(fixed[:, a_t, ea_t] - fixed[:, b_t, eb_t], sa, sb, float(s.ci))
  nan = np.full(cols["diff"].shape, np.nan)
  cols["cohens_d_seeds"] = stats.cohens_d(np.moveaxis(sa, 1, -1), np.moveaxis(sb, 1, -1)) if len(sec.seeds) > 1 else nan
  subj = sec.selected(sec.per_subject).mean(axis=2)  # [G, Ru, E, R]
  cols["cohens_d_subjects"] = (
    stats.cohens_d(np.moveaxis(subj[:, a_t, ea_t], 0, -1), np.moveaxis(subj[:, b_t, eb_t], 0, -1))
    if len(sec.groups) > 1
    else nan
  )
  meta = dict(
    epoch=ep_t,
    rule_a=[sec.rules[a] for a in a_t],
    epoch_a=[sec.epochs[e] for e in ea_t],
    rule_b=[sec.rules[b] for b in b_t],
    epoch_b=[sec.epochs[e] for e in eb_t],
  )
  df = _insert_layer(tests_frame(meta, sec.rois, cols), sec)
  return settings_lib.correct_family(df, str(s.family), float(s.alpha), "pairwise: ")


def delta_r(sec: Section, s) -> pd.DataFrame:
  """Δρ from epoch 0 at every later milestone of every rule (ROI's layer), corrected within `stats.family`."""
  if 0 not in sec.epochs:
    return pd.DataFrame()
  e0 = sec.epochs.index(0)
  tests = [
    (a, e)
    for a in range(len(sec.rules))
    for e in range(len(sec.epochs))
    if e != e0 and sec.have[a, e] and sec.have[a, e0]
  ]
  if not tests:
    return pd.DataFrame()
  a_t, e_t = (np.array(x) for x in zip(*tests))
  seed_level = sec.selected(sec.rho)
  fixed = seed_level.mean(axis=2)
  d = fixed[:, a_t, e_t] - fixed[:, a_t, e0]  # [B1, T, R]
  cols = _paired_stats(d, seed_level[0][a_t, :, e_t], seed_level[0][a_t, :, e0], float(s.ci))
  cols["delta_r"] = cols.pop("diff")
  pct = 100.0 * d / fixed[:, a_t, e0]
  plo, phi = stats.percentile_ci(pct[1:], float(s.ci))
  dseed = seed_level[0][a_t, :, e_t] - seed_level[0][a_t, :, e0]
  dz = stats.cohens_dz(np.moveaxis(dseed, 1, -1)) if len(sec.seeds) > 1 else np.full(d.shape[1:], np.nan)
  values = dict(
    rho_epoch0=fixed[0, a_t, e0],
    rho=fixed[0, a_t, e_t],
    delta_r=cols["delta_r"],
    ci_low=cols["ci_low"],
    ci_high=cols["ci_high"],
    percent_change=pct[0],
    pct_ci_low=plo,
    pct_ci_high=phi,
    p_boot=cols["p_boot"],
    p_signflip_seeds=cols["p_signflip_seeds"],
    cohens_dz_seeds=dz,
  )
  meta = dict(rule=[sec.rules[a] for a in a_t], epoch=[sec.epochs[e] for e in e_t])
  df = _insert_layer(tests_frame(meta, sec.rois, values), sec)
  return settings_lib.correct_family(df, str(s.family), float(s.alpha), "delta_r: ")


def min_epoch(sec: Section, ci: float) -> pd.DataFrame:
  """The epoch at which each rule's alignment is lowest (per ROI), re-chosen on every resample."""
  fixed = sec.selected(sec.rho).mean(axis=2)  # [B1, Ru, E, R]
  rows = []
  for a, rule in enumerate(sec.rules):
    have_e = np.flatnonzero(sec.have[a])
    if len(have_e) < 2:
      continue
    arg = np.array(sec.epochs)[have_e][np.argmin(fixed[:, a][:, have_e], axis=1)]  # [B1, R]
    lo, hi = stats.percentile_ci(arg[1:].astype(float), ci)
    rows.append(
      pd.DataFrame(
        dict(
          rule=rule,
          roi=sec.rois,
          layer=[sec.layer_label(r) for r in sec.rois],
          min_epoch=arg[0],
          ci_low=lo,
          ci_high=hi,
          share_of_resamples=np.mean(arg[1:] == arg[0], axis=0),
        )
      )
    )
  return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _last(sec: Section, arr: np.ndarray) -> np.ndarray:
  """[B1, Ru, E, R] -> [B1, Ru, R] at each rule's last checkpoint."""
  return arr[:, np.arange(len(sec.rules)), sec.last_idx]


def main(sec: Section, s, pw: pd.DataFrame) -> pd.DataFrame:
  """Each rule at its last checkpoint: rho with CI, both conventions, best layer, ceiling, significance marks."""
  ci = float(s.ci)
  fin = _last(sec, sec.selected(sec.rho).mean(axis=2))
  fin_best = _last(sec, np.max(sec.rho, axis=-2).mean(axis=2))
  fin_mr = _last(sec, sec.selected(sec.rho_mean_rdm).mean(axis=2))
  cols, cols_b, cols_mr = ci_cols(fin, ci), ci_cols(fin_best, ci), ci_cols(fin_mr, ci)
  values = dict(
    rho=cols["value"],
    ci_low=cols["ci_low"],
    ci_high=cols["ci_high"],
    rho_mean_rdm=cols_mr["value"],
    mean_rdm_ci_low=cols_mr["ci_low"],
    mean_rdm_ci_high=cols_mr["ci_high"],
    best_layer_rho=cols_b["value"],
    best_ci_low=cols_b["ci_low"],
    best_ci_high=cols_b["ci_high"],
    noise_lower=np.broadcast_to(sec.lower[0], fin.shape[1:]),
    noise_upper=np.broadcast_to(sec.upper[0], fin.shape[1:]),
  )
  meta = dict(rule=sec.rules, epoch=[sec.epochs[e] for e in sec.last_idx])
  df = _insert_layer(tests_frame(meta, sec.rois, values), sec)
  df.insert(7, "excludes_zero", (df.ci_low > 0) | (df.ci_high < 0))
  best_layer = np.argmax(np.nan_to_num(sec.rho[0], nan=-np.inf), axis=3)  # [Ru, Se, E, R]
  df["best_layers_per_seed"] = [
    "/".join(READOUT_LAYERS[k] for k in best_layer[a, :, sec.last_idx[a], r])
    for a in range(len(sec.rules))
    for r in range(len(sec.rois))
  ]
  df.insert(8, "differs_from_reference", [_differs(pw, m, str(s.reference_rule)) for _, m in df.iterrows()])
  return df


def _differs(pw: pd.DataFrame, m, ref: str):
  """True/False: the pairwise test of this rule against the reference rule at this milestone is significant."""
  if not len(pw) or m.rule == ref:
    return np.nan
  hit = pw[
    (pw.roi == m.roi)
    & (pw.epoch == m.epoch)
    & (((pw.rule_a == m.rule) & (pw.rule_b == ref)) | ((pw.rule_a == ref) & (pw.rule_b == m.rule)))
  ]
  return bool(hit.significant_bh.iloc[0]) if len(hit) else np.nan


def partial_column(name: str, form: str) -> str:
  """CSV column of one control and form: rho_partial_<control> (reference), rho_partial_<control>_closed."""
  return f"rho_partial_{name}" + ("" if form == "reference" else "_closed")


def partial_rsa(sec: Section, s) -> pd.DataFrame:
  """Partial rho controlling for each control RDM, at each rule's last checkpoint, with CIs; `delta_pixel` =
  partial (pixel, first form) − plain rho."""
  if not sec.partial:
    return pd.DataFrame()
  forms = settings_lib.partial_forms(s)
  fin = _last(sec, sec.selected(sec.rho).mean(axis=2))
  cols = {"rho": fin}
  for form, arr in sec.partial.items():
    for c_k, name in enumerate(sec.controls):
      cols[partial_column(name, form)] = arr[:, c_k]
  cols["delta_pixel"] = cols[partial_column("pixel", forms[0])] - fin
  flat = {}
  for name, v in cols.items():
    lo, hi = stats.percentile_ci(v[1:], float(s.ci))
    flat.update({name: v[0], f"{name}_ci_low": lo, f"{name}_ci_high": hi})
  meta = dict(rule=sec.rules, epoch=[sec.epochs[e] for e in sec.last_idx])
  return _insert_layer(tests_frame(meta, sec.rois, flat), sec)


def all_tables(sec: Section, s) -> dict[str, pd.DataFrame]:
  """Every table of one section."""
  ci = float(s.ci)
  pw = pairwise(sec, s)
  return {
    "noise_ceiling": noise_ceiling(sec, ci),
    "trajectory": trajectory(sec, ci),
    "layer_roi": layer_roi(sec, ci),
    "pairwise": pw,
    "delta_r": delta_r(sec, s),
    "min_epoch": min_epoch(sec, ci),
    "main": main(sec, s, pw),
    "partial_rsa": partial_rsa(sec, s),
  }
