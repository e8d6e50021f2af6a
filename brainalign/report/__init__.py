"""The report step: a finished run's stored RDMs -> statistics, tables, figures, a markdown page.

  python main.py --mode=report --workdir=runs/demo [--config.stats.bootstrap_samples=200]

The report reads only the run (brainalign.report.run): its model RDMs, the brain RDMs and pair sets it used, its
alignment.csv and its own `stats` block from run_info.json; `--config.stats.KEY=VALUE` overrides single
settings, and report.md lists every setting with where it came from. Nothing the run computed is recomputed,
and files whose fingerprints do not match the run's record are refused.

One section per (evaluation resolution, pair set) of the run, the primary one (stats.resolution, stats.pairs)
first. Each section is ONE compiled bootstrap call over all conditions × ROIs × subjects (+ the subject-mean
RDM) and one for partial RSA, on the same resample rows (brainalign.report.section); the tables are short
functions of those arrays (brainalign.report.tables), drawn by brainalign.report.figures and written out by
brainalign.report.render. Any data set works: ROI and subject names come from the data; an ROI without a
layer in `stats.layer_for_roi` is compared with its best layer per seed; a single RDM per ROI is reported
without a noise ceiling (the page says why); sessions kept separate are pooled per subject.

Outputs in <workdir>/report/: report.md, *.csv (tidy, every section), figures/*.png, report_info.json.
"""

import pathlib
from collections.abc import Mapping

import pandas as pd
from absl import logging

from brainalign import devices, io
from brainalign.errors import ConfigError
from brainalign.report import figures, progress, render, section, tables
from brainalign.report import run as run_lib
from brainalign.report import settings as settings_lib
from brainalign.report.settings import FAMILIES, correct_family, layer_mapping, partial_forms

__all__ = ["FAMILIES", "correct_family", "layer_mapping", "partial_forms", "report", "sections"]


def sections(run: run_lib.Run, s) -> list[tuple[int, str]]:
  """Every (resolution px, pair set) the run evaluated; the primary one (stats.resolution, stats.pairs) first."""
  resolutions, pair_sets = run.resolutions, list(run.probe.flat)
  res = int(s.resolution) or max(resolutions)
  if res not in resolutions:
    raise ConfigError(f"config.stats.resolution={res} px was not evaluated by the run; it evaluated {resolutions}")
  pairs = ("cross_run" if "cross_run" in pair_sets else pair_sets[0]) if s.pairs == "auto" else str(s.pairs)
  if pairs not in pair_sets:
    raise ConfigError(f"config.stats.pairs={pairs!r} was not evaluated by the run; it evaluated {pair_sets}")
  rest = [(r, p) for r in sorted(resolutions, reverse=True) for p in pair_sets if (r, p) != (res, pairs)]
  return [(res, pairs)] + rest


def report(workdir: str | pathlib.Path, overrides: Mapping | None = None) -> dict:
  """Writes <workdir>/report/ for a finished run; returns {table: DataFrame} (every section, tidy).

  overrides: {stats key: value} applied on top of the run's recorded stats block (e.g. {"bootstrap_samples":
  200}); a ConfigDict of a whole stats block works too."""
  run = run_lib.load(workdir)
  s, sources = settings_lib.resolve(run.config.stats, overrides)
  out = run.workdir / "report"
  resamples = section.resample_indices(len(run.probe.brain.stimuli), s)
  merged: dict[str, list] = {}
  writer = devices.is_writer()
  bodies, first = [], None
  todo = list(sections(run, s))
  durations = []  # wall seconds of the sections done (for the estimate of the others)
  for k, (res, pairs_name) in enumerate(todo):
    label = f"Report section {k + 1}/{len(todo)} ({res} px, {pairs_name} pairs)"
    logging.info("%s: bootstrap of B = %d resamples", label, int(s.bootstrap_samples))
    parts = section.bootstrap_parts(run, res)
    bar = progress.SectionProgress(label, resamples.shape[0], parts, len(todo) - k - 1, tuple(durations))
    sec = section.compute(run, res, pairs_name, s, resamples, progress=bar)
    durations.append(bar.close())
    first = first or sec
    t = tables.all_tables(sec, s)
    for name, df in t.items():
      merged.setdefault(name, []).append(render.label(df, run.probe.data, res, pairs_name, k == 0))
    title = f"{run.probe.name} · {res} px · {pairs_name} pairs"
    suffix = "" if k == 0 else f"_{res}px_{pairs_name}"
    figs = figures.draw(sec, t, s, run.probe, out / "figures", title, suffix, heatmaps=k == 0) if writer else []
    bodies += render.section(sec, t, s, figs, primary=k == 0)
  merged = {name: pd.concat(dfs, ignore_index=True) for name, dfs in merged.items()}
  if writer:
    _write(out, merged, run, s, sources, first, bodies)
  devices.barrier("report")
  return merged


def _write(out, merged, run, s, sources, first, bodies) -> None:
  """report.md, the CSVs and report_info.json (process 0 only)."""
  for name, df in merged.items():
    io.write_csv(df, out / f"{name}.csv")
  with io.atomic_path(out / "report.md") as tmp:
    tmp.write_text(render.page(run, s, sources, first, bodies, list(merged)))
  io.write_json(
    {
      "results_fingerprint": run.info["results_fingerprint"],
      "settings": s.to_dict(),
      "overrides": {k: v for k, v in sources.items() if v == "override"},
    },
    out / "report_info.json",
  )
  logging.info("Report written to %s", out)
