"""report.md: formats the tables of every section as markdown; computes nothing."""

import json

import numpy as np
import pandas as pd

from brainalign.provenance import canonical
from brainalign.report import settings as settings_lib
from brainalign.report import tables as tables_lib
from brainalign.report.section import Section

SIMULATED_WARNING = (
  "**SIMULATED brain data** (brainalign demo): not real fMRI. These numbers show what the "
  "pipeline computes, not findings about the brain."
)


def fmt(v, digits: int = 3) -> str:
  """A number, or 'n/a' for None / NaN / inf."""
  return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def ci(lo, hi, digits: int = 3) -> str:
  """'[lo, hi]'."""
  return f"[{fmt(lo, digits)}, {fmt(hi, digits)}]"


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
  """Markdown table lines (header, rule, one line per row)."""
  return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def settings_block(s, sources: dict) -> list[str]:
  """The statistics settings used, and where each came from (the run's record or an override)."""
  rows = [[f"`{k}`", f"`{json.dumps(canonical(s[k]))}`", sources.get(k, "run")] for k in sorted(sources)]
  return (
    [
      "## Settings",
      "",
      "Statistics settings (`stats`): the run's own, as recorded in run_info.json, unless "
      "overridden on the command line (`--config.stats.KEY=VALUE`).",
      "",
    ]
    + md_table(["key", "value", "from"], rows)
    + [""]
  )


def conventions(s, sec: Section, ceiling_note: str) -> list[str]:
  """The conventions paragraph (comparator, bootstrap, layers, ceiling, tests, partial RSA)."""
  ci_pct = int(round(100 * float(s.ci)))
  mapped = ", ".join(f"{k}→{v}" for k, v in sec.layer_for.items()) or "none"
  unmapped = [r for r in sec.rois if r not in sec.layer_for]
  forms = ", ".join(f"`{f}`" for f in settings_lib.partial_forms(s))
  return [
    "## Conventions",
    "",
    f"* Comparator: `{s.comparator}` (rsatoolbox name). Two group conventions: **per-subject** ρ = comparator "
    f"per subject RDM, mean over each subject's RDMs, then over the {len(sec.groups)} subject(s), then over "
    f"{len(sec.seeds)} seeds (P1 v4, P3; the main number); **mean-RDM** ρ = comparator against the "
    "subject-mean RDM, per seed, then the seed mean (P1 v1/v2). Averaging RDMs first gives higher ρ; the two "
    "are not interchangeable (docs/methods.md §7.7).",
    f"* Stimulus bootstrap: B = {s.bootstrap_samples} resamples of the stimuli (seed {s.bootstrap_seed}), the "
    "same for every condition, resolution and pair set; duplicated stimuli's self-pairs dropped; the pair set "
    f"re-applied to each resample. {ci_pct}% percentile intervals. Two-sided bootstrap p = "
    "(2 min(#≤0, #≥0) + 1)/(B + 1). The point estimates of the per-subject convention are the run's own "
    "(results/alignment.csv).",
    f"* Layer per ROI (`stats.layer_for_roi`): {mapped}"
    + (
      f"; without a mapping ({', '.join(unmapped)}): the best layer per seed, re-chosen on every resample"
      if unmapped
      else ""
    )
    + ".",
    "* Best layer: per seed the layer with the highest subject-mean ρ (P3's convention), then the seed mean.",
    f"* Noise ceiling: {ceiling_note}. No score is divided by a ceiling.",
    "* Tests at every milestone: each pair of rules (a rule evaluated at one checkpoint only, such as the "
    "untrained `random`, enters every milestone with that checkpoint), and each rule's Δρ from epoch 0. "
    f"BH-FDR and Holm within the declared family `stats.family = {s.family}`: "
    f"{settings_lib.FAMILIES[str(s.family)][1]}; each section separately; the `family` column of the CSVs "
    f"names each test's family. α = {s.alpha}.",
    "* Sign-flip p: exact over all 2^K seed sign assignments, one-sided in the direction of the observed difference.",
    f"* Partial RSA (pixel and luminance RDMs controlled): forms {forms} (`closed` = Pearson r of the rank "
    "residuals, the textbook partial Spearman; `reference` = Spearman of the residuals, the reference "
    "implementation's).",
    "",
  ]


def _main_tables(sec: Section, t: dict, s) -> list[str]:
  main, nc = t["main"], t["noise_ceiling"].set_index("roi")
  rules, lines = sec.rules, []
  header = ["ROI", "layer", "noise ceiling lower [CI]", "upper"] + [
    f"{r} (ep {main[main.rule == r].epoch.iloc[0]})" for r in rules
  ]
  rows = []
  for roi in sec.rois:
    cells = []
    for rule in rules:
      m = main[(main.rule == rule) & (main.roi == roi)].iloc[0]
      mark = ("*" if m.excludes_zero else "") + ("†" if m.differs_from_reference is True else "")
      cells.append(f"{fmt(m.rho)} {ci(m.ci_low, m.ci_high)}{mark}")
    n = nc.loc[roi]
    rows.append(
      [roi, sec.layer_label(roi), f"{fmt(n.lower_value)} {ci(n.lower_ci_low, n.lower_ci_high)}", fmt(n.upper_value)]
      + cells
    )
  lines += [
    "### Main table (per-subject convention)",
    "",
    "ρ [CI] per rule (its last checkpoint) and ROI. `*` = CI excludes 0; "
    f"`†` = difference from `{s.reference_rule}` significant after BH-FDR (family above).",
    "",
  ]
  lines += md_table(header, rows)
  by_roi = {roi: main[main.roi == roi] for roi in sec.rois}
  lines += [
    "",
    "Mean-RDM convention (P1 v1/v2): ρ with the subject-mean RDM, per seed, then the seed mean [CI]; "
    "per-subject value beside it:",
    "",
  ]
  lines += md_table(
    ["ROI"] + rules,
    [
      [roi]
      + [
        f"{fmt(m.rho_mean_rdm)} {ci(m.mean_rdm_ci_low, m.mean_rdm_ci_high)} (per-subject {fmt(m.rho)})"
        for _, m in by_roi[roi].iterrows()
      ]
      for roi in sec.rois
    ],
  )
  lines += ["", "Best layer (per seed, then mean):", ""]
  lines += md_table(
    ["ROI"] + rules,
    [
      [roi]
      + [
        f"{fmt(m.best_layer_rho)} {ci(m.best_ci_low, m.best_ci_high)} ({m.best_layers_per_seed})"
        for _, m in by_roi[roi].iterrows()
      ]
      for roi in sec.rois
    ],
  )
  return lines


def _tests(t: dict, s) -> list[str]:
  lines, family = [], settings_lib.FAMILIES[str(s.family)][1]
  pw, dr = t["pairwise"], t["delta_r"]
  if len(pw):
    lines += ["", "### Pairwise differences (every milestone)", "", f"Family: {family.split(';')[0]}.", ""]
    lines += md_table(
      [
        "milestone",
        "ROI",
        "A − B",
        "Δρ [CI]",
        "p (bootstrap)",
        "q (BH)",
        "p (Holm)",
        "p (sign flip, seeds)",
        "d (seeds)",
        "d (subjects)",
      ],
      [
        [
          str(r.epoch),
          r.roi,
          f"{r.rule_a} (ep {r.epoch_a}) − {r.rule_b} (ep {r.epoch_b})",
          f"{fmt(r['diff'], 4)} {ci(r.ci_low, r.ci_high, 4)}",
          fmt(r.p_boot, 4),
          fmt(r.q_bh, 4),
          fmt(r.p_holm, 4),
          fmt(r.p_signflip_seeds, 3),
          fmt(r.cohens_d_seeds, 2),
          fmt(r.cohens_d_subjects, 2),
        ]
        for _, r in pw.iterrows()
      ],
    )
  if len(dr):
    lines += ["", "### Δρ from epoch 0", "", f"Family: {family.split('; for Δρ, ')[-1]}.", ""]
    lines += md_table(
      ["rule", "epoch", "ROI", "ρ(0)", "ρ", "Δρ [CI]", "% change [CI]", "q (BH)", "p (Holm)", "p (sign flip)"],
      [
        [
          r.rule,
          str(r.epoch),
          r.roi,
          fmt(r.rho_epoch0),
          fmt(r.rho),
          f"{fmt(r.delta_r, 4)} {ci(r.ci_low, r.ci_high, 4)}",
          f"{fmt(r.percent_change, 1)} {ci(r.pct_ci_low, r.pct_ci_high, 1)}",
          fmt(r.q_bh, 4),
          fmt(r.p_holm, 4),
          fmt(r.p_signflip_seeds, 3),
        ]
        for _, r in dr.iterrows()
      ],
    )
  return lines


def _extras(t: dict, s) -> list[str]:
  lines, me, pr = [], t["min_epoch"], t["partial_rsa"]
  if len(me):
    lines += ["", "### Epoch of the lowest alignment", ""]
    lines += md_table(
      ["rule", "ROI", "epoch", "CI", "share of resamples"],
      [
        [r.rule, r.roi, str(r.min_epoch), ci(r.ci_low, r.ci_high, 0), f"{r.share_of_resamples:.2f}"]
        for _, r in me.iterrows()
      ],
    )
  if len(pr):
    forms = settings_lib.partial_forms(s)
    px, lum = (tables_lib.partial_column(c, forms[0]) for c in ("pixel", "luminance"))
    other = f"; {', '.join(forms[1:])} form in the CSV" if len(forms) > 1 else ""
    lines += ["", f"### Partial RSA ({forms[0]} form [CI]{other})", ""]
    lines += md_table(
      ["rule", "ROI", "ρ", "ρ partial (pixel)", "ρ partial (luminance)", "partial (pixel) − ρ"],
      [
        [
          r.rule,
          r.roi,
          fmt(r.rho),
          f"{fmt(r[px])} {ci(r[px + '_ci_low'], r[px + '_ci_high'])}",
          f"{fmt(r[lum])} {ci(r[lum + '_ci_low'], r[lum + '_ci_high'])}",
          f"{fmt(r.delta_pixel, 4)} {ci(r.delta_pixel_ci_low, r.delta_pixel_ci_high, 4)}",
        ]
        for _, r in pr.iterrows()
      ],
    )
  return lines


def section(sec: Section, t: dict, s, figures: list[str], primary: bool) -> list[str]:
  """The markdown of one section."""
  head = f"## {sec.res} px · `{sec.pairs_name}` pairs" + (" (primary)" if primary else "")
  lines = [head, "", f"{sec.n_pairs} pairs of {sec.n_stimuli} stimuli; evaluation resolution {sec.res} px.", ""]
  lines += _main_tables(sec, t, s) + _tests(t, s) + _extras(t, s)
  return lines + ["", "### Figures", ""] + [f"![{f}](figures/{f})" for f in figures] + [""]


def page(run, s, sources: dict, first: Section, bodies: list[str], table_names: list[str]) -> str:
  """The whole report.md."""
  lines = ["# brainalign report", ""]
  if run.probe.data == "simulated":
    lines += [f"> ⚠ {SIMULATED_WARNING}", ""]
  lines += [
    f"**Data source:** {run.probe.name} — {run.probe.description}",
    "",
    f"**Run:** {run.workdir} (results fingerprint `{run.info['results_fingerprint']}`)",
    "",
  ]
  lines += settings_block(s, sources) + conventions(s, first, first.ceiling_note) + bodies
  lines += ["Tables (every section, tidy): " + ", ".join(f"`{k}.csv`" for k in table_names) + "."]
  return "\n".join(lines) + "\n"


def label(df: pd.DataFrame, data: str, res: int, pairs: str, primary: bool) -> pd.DataFrame:
  """A section's table with the columns data, resolution, pairs, primary in front."""
  df = df.copy()
  for pos, (col, val) in enumerate((("data", data), ("resolution", res), ("pairs", pairs), ("primary", primary))):
    df.insert(pos, col, val)
  return df
