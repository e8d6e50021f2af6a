"""End to end: a tiny demo run, then `main.py --mode=report`'s step, checked against independent computations."""
import pathlib

import numpy as np
import pandas as pd
import pytest
from rsatoolbox.inference import boot_noise_ceiling
from rsatoolbox.rdm import RDMs
from statsmodels.stats.multitest import multipletests

from brainalign import pipeline, probe, report
from configs import demo


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
  """The tiny demo shrunk further (1 epoch, 32 px), then the report with B = 20."""
  root = tmp_path_factory.mktemp("report")
  c = demo.get_config("tiny")
  c.brain.cache_dir = str(root / "cache")
  c.train.num_epochs = 1
  c.train.milestones = (0, 1)
  c.rule_configs.bp.schedule_epochs = 1
  c.eval.resolutions = (32,)
  c.eval.pair_sets = ("all", "cross_run")
  workdir = root / "run"
  pipeline.run(c, str(workdir))
  tables = report.report(str(workdir), c.stats)
  return c, workdir, tables


def test_report_files_and_data_source(reported):
  """report.md starts with the SIMULATED warning and names the data; every table has a CSV; 4 figures."""
  _, workdir, tables = reported
  out = workdir / "report"
  md = (out / "report.md").read_text()
  head = md.split("## Conventions")[0]
  assert "SIMULATED brain data" in head and "Data source" in head
  for name in ("main", "pairwise", "delta_r", "noise_ceiling", "layer_roi", "trajectory", "min_epoch", "partial_rsa"):
    df = pd.read_csv(out / f"{name}.csv")
    assert len(df) == len(tables[name]) > 0 and (df["data"] == "simulated").all()
  for fig in ("v1_trajectory.png", "all_rois.png", "delta_r.png", "rdms.png"):
    assert (out / "figures" / fig).stat().st_size > 10_000
  assert "## Pairwise differences" in md and "## Δρ from epoch 0" in md


def test_main_table_matches_the_pipelines_alignment_csv(reported):
  """The report's point estimates (its own RDMs + weighted-rank kernel at unit weights) equal the
  pipeline's rsa_grid results: subject mean, then seed mean, cross-run pairs, fixed layer."""
  c, workdir, tables = reported
  align = pd.read_csv(workdir / "results" / "alignment.csv")
  main = tables["main"]
  for _, row in main.iterrows():
    a = align[(align.rule == row.rule) & (align.epoch == row.epoch) & (align.layer == row.layer) &
              (align.roi == row.roi) & (align.pairs == "cross_run") & (align.resolution == 32)]
    want = a.groupby("seed").rho.mean().mean()
    assert row.rho == pytest.approx(want, abs=2e-6)
  # the difference table is the difference of the main table; q-values are BH over the whole family
  pw = tables["pairwise"]
  v1 = pw[pw.roi == "V1"].iloc[0]
  rho = main.set_index(["rule", "roi"]).rho
  assert v1["diff"] == pytest.approx(rho[(v1.rule_a, "V1")] - rho[(v1.rule_b, "V1")], abs=1e-9)
  np.testing.assert_allclose(pw.q_bh, multipletests(pw.p_boot, method="fdr_bh")[1])
  np.testing.assert_allclose(pw.p_holm, multipletests(pw.p_boot, method="holm")[1])


def test_noise_ceiling_matches_rsatoolbox(reported):
  """The report's ceiling point values equal rsatoolbox's boot_noise_ceiling on the cross-run brain RDMs
  (as float32, which is what brainalign ranks: rounding to float32 can tie near-equal dissimilarities)."""
  c, _, tables = reported
  _, brain, _ = probe.load_brain(c.brain)
  n = len(brain.stimuli)
  i, j = probe.pair_set("cross_run", n, brain.runs)
  flat = i * n - i * (i + 1) // 2 + (j - i - 1)
  nc = tables["noise_ceiling"].set_index("roi")
  for r, roi in enumerate(brain.rois):
    lo, up = boot_noise_ceiling(RDMs(brain.rdm_vectors[:, r][:, flat].astype(np.float32).astype(np.float64)), method="spearman")
    assert nc.loc[roi, "lower_value"] == pytest.approx(lo, abs=2e-6)
    assert nc.loc[roi, "upper_value"] == pytest.approx(up, abs=2e-6)
    assert nc.loc[roi, "lower_ci_low"] <= nc.loc[roi, "lower_ci_high"]


def test_missing_run_is_a_clear_error(tmp_path):
  """A workdir without run_info.json fails with a message saying what is expected."""
  c = demo.get_config("tiny")
  with pytest.raises(FileNotFoundError, match="finished run"):
    report.report(str(pathlib.Path(tmp_path)), c.stats)
