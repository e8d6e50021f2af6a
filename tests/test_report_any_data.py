"""The report on data sets that are not THINGS-fMRI: RDMs given as a .mat file (tests/rdm_fixture.py).

One ROI ('hIT', not one of the six), four subjects × two sessions: sessions averaged (the ceiling then equals
rsatoolbox's boot_noise_ceiling on the averaged RDMs), or kept separate (pooled per subject, the ceiling named
for what it is); and a data set with a single RDM (reported without a ceiling, saying why). The ROI has no
layer mapping, so it is compared with its best layer per seed; every title names the data source.
"""

import numpy as np
import pandas as pd
import pytest
import rdm_fixture
import scipy.stats
from matplotlib.figure import Figure
from rsatoolbox.inference import boot_noise_ceiling
from rsatoolbox.rdm import RDMs
from scipy.spatial.distance import pdist

from brainalign import pipeline, report


@pytest.fixture(scope="module")
def averaged(tmp_path_factory):
  root = tmp_path_factory.mktemp("hit")
  data = rdm_fixture.write(root / "data")
  c = rdm_fixture.config(data, root / "cache")
  pipeline.run(c, str(root / "run"))
  return data, c, root / "run"


def _titles(monkeypatch) -> list:
  seen = []
  original = Figure.suptitle

  def record(self, t, *args, **kwargs):
    seen.append(t)
    return original(self, t, *args, **kwargs)

  monkeypatch.setattr(Figure, "suptitle", record)
  return seen


def test_four_subjects_two_sessions_averaged(averaged, monkeypatch):
  """The report completes; the ceiling equals rsatoolbox's on the session-averaged RDMs; hIT, having no mapped
  layer, uses the best layer per seed; titles and report.md name the source (brain.mat), never THINGS-fMRI."""
  data, c, workdir = averaged
  titles = _titles(monkeypatch)
  tables = report.report(str(workdir))
  mean_rdms = np.stack([(data["rdms"][(s, 1)] + data["rdms"][(s, 2)]) / 2 for s in ("S1", "S2", "S3", "S4")])
  lo, up = boot_noise_ceiling(RDMs(mean_rdms.astype(np.float32).astype(np.float64)), method="spearman")
  nc = tables["noise_ceiling"].iloc[0]
  assert (
    nc.roi == "hIT" and nc.lower_value == pytest.approx(lo, abs=2e-6) and nc.upper_value == pytest.approx(up, abs=2e-6)
  )
  main = tables["main"]
  assert set(main.layer) == {"best"} and set(main.roi) == {"hIT"}
  md = (workdir / "report" / "report.md").read_text()
  assert "brain.mat" in md and "THINGS" not in md and "leave-one-subject-out" in md
  assert titles and all("brain.mat" in t for t in titles)
  # the best-layer value is the per-seed maximum over layers of the subject-mean rho (scipy oracle)
  a = pd.read_csv(workdir / "results" / "alignment.csv")
  bp = main[main.rule == "bp"].iloc[0]
  per_seed = a[(a.rule == "bp") & (a.epoch == 1)].groupby(["seed", "layer"]).rho.mean().groupby("seed").max()
  assert bp.rho == pytest.approx(per_seed.mean(), abs=1e-12)
  with np.load(workdir / "features" / "bp" / "epoch_0001.npz") as z:
    f = z["32px/conv1"][0].astype(np.float64)
  row = a[(a.rule == "bp") & (a.epoch == 1) & (a.layer == "conv1") & (a.seed == c.seeds[0]) & (a.subject == "S2")]
  assert row.rho.item() == pytest.approx(scipy.stats.spearmanr(pdist(f, "correlation"), mean_rdms[1])[0], abs=5e-5)


def test_sessions_kept_separate_are_pooled_per_subject(averaged, tmp_path):
  """rdms_sessions=separate: 8 session RDMs of 4 subjects; per-subject rho = mean over each subject's sessions,
  then over subjects (scipy oracle); the ceiling is named leave-one-RDM-out and equals rsatoolbox's over the 8."""
  data, _, _ = averaged
  c = rdm_fixture.config(data, tmp_path / "cache", rules=("random",), sessions="separate")
  pipeline.run(c, str(tmp_path / "run"))
  tables = report.report(str(tmp_path / "run"))
  md = (tmp_path / "run" / "report" / "report.md").read_text()
  assert "leave-one-RDM-out over 8 RDMs of 4 subjects" in md
  session_rdms = np.stack([data["rdms"][k] for k in sorted(data["rdms"])])
  lo, _ = boot_noise_ceiling(RDMs(session_rdms.astype(np.float32).astype(np.float64)), method="spearman")
  assert tables["noise_ceiling"].lower_value.iloc[0] == pytest.approx(lo, abs=2e-6)
  a = pd.read_csv(tmp_path / "run" / "results" / "alignment.csv")
  assert a.subject.nunique() == 8
  a["group"] = a.subject.str.split(" | ", regex=False).str[0]
  per_seed = a.groupby(["seed", "layer", "group"]).rho.mean().groupby(["seed", "layer"]).mean().groupby("seed").max()
  assert tables["main"].rho.iloc[0] == pytest.approx(per_seed.mean(), abs=1e-12)


def test_a_single_rdm_is_reported_without_a_ceiling(tmp_path):
  """One subject, one session: point estimates and stimulus-bootstrap CIs, no noise ceiling, and the page says
  why."""
  data = rdm_fixture.write(tmp_path / "data", subjects=("M1",), sessions=1)
  c = rdm_fixture.config(data, tmp_path / "cache", rules=("random",))
  pipeline.run(c, str(tmp_path / "run"))
  tables = report.report(str(tmp_path / "run"))
  nc = tables["noise_ceiling"].iloc[0]
  assert np.isnan(nc.lower_value) and np.isnan(nc.upper_value)
  main = tables["main"].iloc[0]
  assert np.isfinite(main.rho) and main.ci_low <= main.rho <= main.ci_high
  assert (
    "no noise ceiling: the data have a single RDM per ROI" in (tmp_path / "run" / "report" / "report.md").read_text()
  )
