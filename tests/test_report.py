"""End to end: a tiny demo run, then `main.py --mode=report`'s step, checked against independent computations."""

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.spatial
import scipy.stats
from rsatoolbox.inference import boot_noise_ceiling
from rsatoolbox.rdm import RDMs
from statsmodels.stats.multitest import multipletests

from brainalign import pipeline, probe, provenance, report, rsa, stats
from brainalign.configs import common, demo
from brainalign.data import images

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
  """The tiny demo shrunk further (three rules, 1 epoch, 32 px) with a non-default stats block (B = 17, 90 %
  CIs), then the report called without any settings: it must use the run's own block."""
  root = tmp_path_factory.mktemp("report")
  c = demo.get_config("tiny")
  c.rules = ("random", "bp", "fa")  # 3 rule pairs per milestone: enough to exercise the families
  c.brain.cache_dir = str(root / "cache")
  c.train.num_epochs = 1
  c.train.milestones = (0, 1)
  common.set_schedule_epochs(c, 1)
  c.eval.resolutions = (32,)
  c.eval.pair_sets = ("all", "cross_run")
  c.stats.bootstrap_samples, c.stats.ci = 17, 0.9
  workdir = root / "run"
  pipeline.run(c, str(workdir))
  tables = report.report(str(workdir))
  return c, workdir, tables


def test_report_files_and_data_source(reported):
  """report.md starts with the SIMULATED warning and names the data; one section per (resolution, pair
  set) of the run, the primary (cross_run) first; every table has a CSV covering both sections; figures
  for the primary section and suffixed ones for the other."""
  _, workdir, tables = reported
  out = workdir / "report"
  md = (out / "report.md").read_text()
  head = md.split("## Conventions")[0]
  assert "SIMULATED brain data" in head and "Data source" in head
  for name in ("main", "pairwise", "delta_r", "noise_ceiling", "layer_roi", "trajectory", "min_epoch", "partial_rsa"):
    df = pd.read_csv(out / f"{name}.csv")
    assert len(df) == len(tables[name]) > 0 and (df["data"] == "simulated").all()
    assert set(df.pairs) == {"all", "cross_run"} and set(df.resolution) == {32}
    assert set(df[df.primary].pairs) == {"cross_run"}
  for fig in (
    "trajectory_V1.png",
    "all_rois.png",
    "delta_r.png",
    "rdms.png",
    "trajectory_V1_32px_all.png",
    "all_rois_32px_all.png",
    "delta_r_32px_all.png",
  ):
    assert (out / "figures" / fig).stat().st_size > 10_000
  assert md.index("## 32 px · `cross_run` pairs (primary)") < md.index("## 32 px · `all` pairs")
  assert md.count("### Pairwise differences") == 2 and md.count("### Δρ from epoch 0") == 2
  assert "Mean-RDM convention" in md and "stats.family = rule_roi_per_milestone" in md


def _scipy_rsa(c, workdir, brain, rule, epoch, layer, roi, pairs):
  """Independent oracle from the saved features and the brain RDMs: scipy pdist (correlation distance)
  per seed over the pair set, Spearman with each subject's RDM and with the subject-mean RDM (scipy)."""
  n = len(brain.stimuli)
  i, j = probe.pair_set(pairs, n, brain.runs)
  flat = i * n - i * (i + 1) // 2 + (j - i - 1)
  r = list(brain.rois).index(roi)
  subj = brain.rdm_vectors[:, r][:, flat].astype(np.float64)  # [S, P]
  with np.load(workdir / "features" / rule / f"epoch_{epoch:04d}.npz") as z:
    feats = z[f"32px/{layer}"].astype(np.float64)  # [seeds, n, d]
  per_subject, mean_rdm = [], []
  for f in feats:
    m = scipy.spatial.distance.pdist(f, "correlation")[flat]
    per_subject.append(np.mean([scipy.stats.spearmanr(m, s)[0] for s in subj]))
    mean_rdm.append(scipy.stats.spearmanr(m, subj.mean(0))[0])
  return np.mean(per_subject), np.mean(mean_rdm)


def test_every_section_matches_alignment_csv_and_scipy(reported):
  """In every section (both pair sets), the main table's per-subject rho equals the pipeline's
  alignment.csv (subject mean, then seed mean, fixed layer), and both group conventions equal a direct
  scipy computation from the saved features (per-subject: mean of per-subject Spearman; mean-RDM:
  Spearman with the element-wise subject mean of the brain RDMs, P1 v1/v2).

  The report's point estimates of the per-subject convention ARE the run's alignment.csv (so they agree to the
  last bit, up to the order of the two means). Against scipy, tolerance 5e-5: scipy computes the model RDMs
  from the float32 features in float64 (pdist), which can reorder near-tied dissimilarities; one swap of
  adjacent ranks moves rho by up to ~24 / P^2 ~ 4e-5 at P = 780 (observed: up to 8e-6). The conventions differ
  from each other by ~1e-2 here."""
  c, workdir, tables = reported
  _, brain, _ = probe.load_brain(c.brain)
  align = pd.read_csv(workdir / "results" / "alignment.csv")
  main = tables["main"]
  assert len(main) == 2 * len(c.rules) * len(brain.rois)
  for _, row in main.iterrows():
    a = align[
      (align.rule == row.rule)
      & (align.epoch == row.epoch)
      & (align.layer == row.layer)
      & (align.roi == row.roi)
      & (align.pairs == row.pairs)
      & (align.resolution == row.resolution)
    ]
    assert row.rho == pytest.approx(a.groupby("seed").rho.mean().mean(), abs=1e-12)
  for _, row in main[main.roi.isin(["V1", "IT"])].iterrows():
    per_subject, mean_rdm = _scipy_rsa(c, workdir, brain, row.rule, row.epoch, row.layer, row.roi, row.pairs)
    assert row.rho == pytest.approx(per_subject, abs=5e-5)
    assert row.rho_mean_rdm == pytest.approx(mean_rdm, abs=5e-5)
    assert row.mean_rdm_ci_low <= row.mean_rdm_ci_high


def test_tests_at_every_milestone_corrected_within_the_declared_family(reported):
  """Rule differences are tested at every milestone (the untrained rule, evaluated at epoch 0 only, with
  its epoch-0 checkpoint); the default family is all rule pairs x ROIs at one milestone, per section:
  q (BH) and Holm equal statsmodels' multipletests applied by hand to exactly those rows. The same for
  the Δρ table (all rules x ROIs at one milestone) and for the two alternative families."""
  c, _, tables = reported
  pw, dr = tables["pairwise"], tables["delta_r"]
  n_rois = pw.roi.nunique()
  n_pairs = len(c.rules) * (len(c.rules) - 1) // 2
  assert sorted(set(pw.epoch)) == list(c.train.milestones)
  assert set(pw[pw.rule_a == "random"].epoch_a) == {0}  # static rule enters every milestone at epoch 0
  for _, fam in pw.groupby(["pairs", "epoch"]):
    assert len(fam) == n_pairs * n_rois and fam.family.nunique() == 1
    np.testing.assert_allclose(fam.q_bh, multipletests(fam.p_boot, method="fdr_bh")[1])
    np.testing.assert_allclose(fam.p_holm, multipletests(fam.p_boot, method="holm")[1])
  for _, fam in dr.groupby(["pairs", "epoch"]):
    assert len(fam) == fam.rule.nunique() * n_rois
    np.testing.assert_allclose(fam.q_bh, multipletests(fam.p_boot, method="fdr_bh")[1])
  # the difference at the last milestone is the difference of the main table
  main = tables["main"].set_index(["pairs", "rule", "roi"]).rho
  last = pw[(pw.epoch == max(c.train.milestones)) & (pw.roi == "V1") & (pw.pairs == "cross_run")].iloc[0]
  assert last["diff"] == pytest.approx(
    main[("cross_run", last.rule_a, "V1")] - main[("cross_run", last.rule_b, "V1")], abs=1e-9
  )
  one = pw[pw.pairs == "cross_run"]
  for family, keys in (("rule_roi_all_milestones", []), ("rule_per_roi_milestone", ["epoch", "roi"])):
    got = report.correct_family(one.drop(columns=["family", "q_bh", "p_holm", "significant_bh"]), family, 0.05)
    groups = [got] if not keys else [g for _, g in got.groupby(keys)]
    for g in groups:
      np.testing.assert_allclose(g.q_bh, multipletests(g.p_boot, method="fdr_bh")[1])
      np.testing.assert_allclose(g.p_holm, multipletests(g.p_boot, method="holm")[1])
    assert got.family.nunique() == len(groups)
  with pytest.raises(ValueError, match="rule_roi_per_milestone"):
    report.correct_family(one, "rules", 0.05)


def test_partial_rsa_has_bootstrap_cis_and_matches_numpy(reported):
  """Partial RSA rows carry stimulus-bootstrap CIs; the point estimate (reference form, pixel control)
  equals rank -> centre -> least-squares residual on the pixel RDM's ranks -> Spearman, with NumPy/SciPy,
  averaged over seeds and subjects (tolerance 5e-5: float32 vs float64 model RDMs, see above)."""
  c, workdir, tables = reported
  pr = tables["partial_rsa"]
  assert {"rho_partial_pixel_ci_low", "rho_partial_luminance_ci_high", "delta_pixel_ci_low"} <= set(pr.columns)
  assert (pr.rho_partial_pixel_ci_low <= pr.rho_partial_pixel_ci_high).all()
  _, brain, images_dir = probe.load_brain(c.brain)
  row = pr[(pr.rule == "bp") & (pr.roi == "V1") & (pr.pairs == "all")].iloc[0]
  n = len(brain.stimuli)
  i, j = probe.pair_set("all", n, brain.runs)
  imgs = images.load_images(images.stimulus_paths(images_dir, brain.stimuli), 32)
  z = stats.pixel_rdm_vector(imgs, (i, j)).astype(np.float64)
  subj = brain.rdm_vectors[:, list(brain.rois).index("V1")].astype(np.float64)

  def resid(v):
    rv, rz = scipy.stats.rankdata(v), scipy.stats.rankdata(z)
    rv, rz = rv - rv.mean(), rz - rz.mean()
    return rv - rz * (rv @ rz) / (rz @ rz)

  with np.load(workdir / "features" / "bp" / f"epoch_{row.epoch:04d}.npz") as f:
    feats = f[f"32px/{row.layer}"].astype(np.float64)
  want = np.mean(
    [
      [scipy.stats.spearmanr(resid(scipy.spatial.distance.pdist(x, "correlation")), resid(s))[0] for s in subj]
      for x in feats
    ]
  )
  assert row.rho_partial_pixel == pytest.approx(want, abs=5e-5)
  want_closed = np.mean(
    [
      [scipy.stats.pearsonr(resid(scipy.spatial.distance.pdist(x, "correlation")), resid(s))[0] for s in subj]
      for x in feats
    ]
  )  # the textbook form: Pearson r of the rank residuals
  assert row.rho_partial_pixel_closed == pytest.approx(want_closed, abs=5e-5)
  assert (pr.rho_partial_pixel_closed_ci_low <= pr.rho_partial_pixel_closed_ci_high).all()


def test_noise_ceiling_matches_rsatoolbox(reported):
  """The report's ceiling point values equal rsatoolbox's boot_noise_ceiling on the cross-run brain RDMs
  (as float32, which is what brainalign ranks: rounding to float32 can tie near-equal dissimilarities)."""
  c, _, tables = reported
  _, brain, _ = probe.load_brain(c.brain)
  n = len(brain.stimuli)
  i, j = probe.pair_set("cross_run", n, brain.runs)
  flat = i * n - i * (i + 1) // 2 + (j - i - 1)
  nc = tables["noise_ceiling"][tables["noise_ceiling"].pairs == "cross_run"].set_index("roi")
  for r, roi in enumerate(brain.rois):
    lo, up = boot_noise_ceiling(
      RDMs(brain.rdm_vectors[:, r][:, flat].astype(np.float32).astype(np.float64)), method="spearman"
    )
    assert nc.loc[roi, "lower_value"] == pytest.approx(lo, abs=2e-6)
    assert nc.loc[roi, "upper_value"] == pytest.approx(up, abs=2e-6)
    assert nc.loc[roi, "lower_ci_low"] <= nc.loc[roi, "lower_ci_high"]


def test_missing_run_is_a_clear_error(tmp_path):
  """A workdir without run_info.json fails with a message saying what is expected."""
  c = demo.get_config("tiny")
  with pytest.raises(FileNotFoundError, match="finished run"):
    report.report(str(pathlib.Path(tmp_path)), c.stats)


def test_report_uses_the_runs_stats_block_and_says_so(reported):
  """Called without settings, the report used the run's non-default block (B = 17, 90 % CIs), and report.md
  lists every setting as coming from the run."""
  _, workdir, tables = reported
  info = json.loads((workdir / "report" / "report_info.json").read_text())
  assert info["settings"]["bootstrap_samples"] == 17 and info["settings"]["ci"] == 0.9 and info["overrides"] == {}
  md = (workdir / "report" / "report.md").read_text()
  assert "B = 17 resamples" in md and "90% percentile intervals" in md
  assert "| `bootstrap_samples` | `17` | run |" in md


def test_main_report_without_config_uses_the_run_block_and_applies_one_override(reported, tmp_path):
  """`main.py --mode=report --workdir=W --config.stats.bootstrap_samples=3`: B is the override, every other
  setting (here the 90 % CI) is the run's, and report.md says which came from where."""
  _, workdir, _ = reported
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy)
  proc = subprocess.run(
    [sys.executable, str(ROOT / "main.py"), "--mode=report", f"--workdir={copy}", "--config.stats.bootstrap_samples=3"],
    capture_output=True,
    text=True,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  info = json.loads((copy / "report" / "report_info.json").read_text())
  assert info["settings"]["bootstrap_samples"] == 3 and info["settings"]["ci"] == 0.9
  assert info["overrides"] == {"bootstrap_samples": "override"}
  md = (copy / "report" / "report.md").read_text()
  assert "| `bootstrap_samples` | `3` | override |" in md and "| `ci` | `0.9` | run |" in md


def test_report_never_recomputes_a_model_rdm(reported, tmp_path, monkeypatch):
  """The report reads the run's stored model RDMs: every function that builds an RDM from features fails
  if called, and the report still completes with the same main table."""
  _, workdir, tables = reported
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy)

  def forbidden(*args, **kwargs):
    raise AssertionError("the report recomputed a model RDM from features")

  for name in ("rdm_vectors", "rdm", "model_rdms", "rsa_grid"):
    monkeypatch.setattr(rsa, name, forbidden)
  again = report.report(str(copy))
  pd.testing.assert_frame_equal(again["main"], tables["main"])


def test_report_refuses_files_that_do_not_match_the_run(reported, tmp_path):
  """A model-RDM file from another run (other fingerprint) in the workdir is refused, naming the file."""
  _, workdir, _ = reported
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy)
  path = copy / "rdms" / "bp" / "32px.npz"
  with np.load(path) as z:
    arrays = {k: z[k] for k in z.files}
  arrays["fingerprint"] = np.asarray("0123456789abcdef")
  np.savez(path, **arrays)
  with pytest.raises(provenance.ProvenanceError, match=r"rdms/bp/32px\.npz"):
    report.report(str(copy))
