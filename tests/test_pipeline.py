"""End to end: config -> training -> checkpoints -> features -> RSA -> tidy results, on tiny settings."""

import json
import pathlib

import numpy as np
import pandas as pd
import pytest
import things_fixture
from PIL import Image
from scipy import spatial, stats

from brainalign import pipeline, results
from brainalign.configs import demo, paper
from brainalign.data import things


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("demo_cache")


def _tiny_demo(cache_dir):
  c = demo.get_config("tiny")
  c.brain.cache_dir = str(cache_dir)
  return c


def _read_tables(workdir):
  return {
    name: pd.read_csv(pathlib.Path(workdir) / "results" / f"{name}.csv")
    for name in ("alignment", "training", "summary", "diagnostics")
  }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir):
  workdir = tmp_path_factory.mktemp("run_a")
  pipeline.run(_tiny_demo(cache_dir), str(workdir))
  return workdir


def test_tiny_demo_writes_every_table_with_the_documented_schema(uninterrupted):
  """alignment/training/summary have their columns and exactly one row per grid cell; rho is finite;
  every row and the run info say the data are simulated; the figure exists."""
  c = demo.get_config("tiny")
  t = _read_tables(uninterrupted)
  assert tuple(t["alignment"].columns) == results.ALIGNMENT_COLUMNS
  assert tuple(t["training"].columns) == results.TRAINING_COLUMNS
  assert tuple(t["summary"].columns) == results.SUMMARY_COLUMNS
  S, L, R, J = len(c.seeds), 4, len(c.brain.rois), len(c.brain.subjects)
  per_epoch = S * L * R * J * len(c.eval.resolutions) * len(c.eval.pair_sets)
  a = t["alignment"]
  assert c.rules == ("random", "bp", "fa", "pc", "stdp")  # all five conditions, as the demo
  assert (a.rule == "random").sum() == per_epoch * 1  # untrained: epoch 0 only
  for rule in ("bp", "fa", "pc", "stdp"):
    assert (a.rule == rule).sum() == per_epoch * len(c.train.milestones), rule
  key = ["rule", "seed", "epoch", "layer", "roi", "subject", "resolution", "pairs"]
  assert not a.duplicated(key).any()
  assert np.isfinite(a.rho).all() and (a.rho.abs() <= 1).all()
  assert set(a.data) == {"simulated"} and set(t["training"].data) == {"simulated"}
  n = c.brain.simulation.n_stimuli
  assert set(a[a.pairs == "all"].n_pairs) == {n * (n - 1) // 2}
  assert a[a.pairs == "cross_run"].n_pairs.iloc[0] < n * (n - 1) // 2
  tr = t["training"]
  assert len(tr) == S * (1 + 4 * len(c.train.milestones))  # random: epoch 0; others 0..2
  assert tr[tr.epoch > 0][["loss", "train_accuracy", "test_accuracy"]].notna().all().all()
  # summary: mean over subjects then over seeds, recomputed here from the alignment rows
  s = t["summary"]
  one = a[
    (a.rule == "bp")
    & (a.epoch == 1)
    & (a.layer == "conv2")
    & (a.roi == "V1")
    & (a.resolution == 64)
    & (a.pairs == "all")
  ]
  row = s[
    (s.rule == "bp")
    & (s.epoch == 1)
    & (s.layer == "conv2")
    & (s.roi == "V1")
    & (s.resolution == 64)
    & (s.pairs == "all")
  ]
  per_seed = one.groupby("seed").rho.mean()
  np.testing.assert_allclose(row.rho_mean.item(), per_seed.mean(), rtol=1e-9)
  np.testing.assert_allclose(row.rho_sd.item(), per_seed.std(ddof=1), rtol=1e-9)
  # diagnostics: FA's angles and PC's cosines once per trained epoch and seed, as logged
  d = t["diagnostics"]
  assert tuple(d.columns) == results.DIAGNOSTICS_COLUMNS
  angle = d[d.metric == "angle_fa_vs_bp_conv2"]
  assert set(angle.rule) == {"fa"} and sorted(angle.epoch.unique()) == [1, 2] and len(angle) == 2 * S
  assert ((angle.value >= 0) & (angle.value <= 180)).all()
  cos = d[d.metric == "cos_pc_vs_bp_conv1"]
  assert len(cos) == 2 * S and (cos.value.abs() <= 1 + 1e-6).all()
  log = json.loads((uninterrupted / "logs" / "fa" / "epoch_0002.json").read_text())
  row = angle[(angle.epoch == 2) & (angle.seed == log["seeds"][1])]
  assert row.value.item() == pytest.approx(log["angle_fa_vs_bp_conv2"][1])
  info = json.loads((uninterrupted / "run_info.json").read_text())
  assert info["data"] == "simulated" and "SIMULATED" in info["simulated_data_warning"]
  assert info["train_data_source"]["name"] == "fashion_mnist_demo" and info["train_data_source"]["files"]
  # where the time went: every stage of every rule, shares of the run's wall time
  timed = info["timing"]["stages"]
  assert {(r["stage"], r["rule"]) for r in timed} >= {(s, rule) for s in ("train", "features") for rule in ("fa", "pc")}
  assert sum(r["seconds"] for r in timed) == pytest.approx(info["timing"]["total_seconds"], rel=1e-3)
  # the run lists the images each seed trained on: P3's per-seed draw, numpy default_rng(seed), by hand
  idx = pd.read_csv(uninterrupted / "results" / "train_indices.csv")
  for seed in c.seeds:
    want = np.sort(np.random.default_rng(seed).permutation(8000)[: c.data.num_train])
    np.testing.assert_array_equal(idx[idx.seed == seed]["index"].to_numpy(), want)
  assert (uninterrupted / "figures" / "alignment_vs_epoch.png").stat().st_size > 10_000


def test_killed_run_resumes_and_gives_identical_results(uninterrupted, tmp_path, cache_dir):
  """A run killed in FA's epoch 2 (after BP finished; before FA's epoch-2 checkpoint) resumes when restarted:
  BP is not retrained, FA continues from its epoch-1 checkpoint (feedback kernels B, SGD momentum), PC and STDP
  train from scratch, and every result table equals the uninterrupted run's exactly. (Each rule's state
  round-trips bit-for-bit through a checkpoint: tests/test_checkpointing.py.)"""

  class Killed(Exception):
    pass

  def kill_in_fa_epoch_2(rule, epoch):
    if (rule, epoch) == ("fa", 2):
      raise Killed(rule)

  with pytest.raises(Killed, match="fa"):
    pipeline.run(_tiny_demo(cache_dir), str(tmp_path), on_epoch=kill_in_fa_epoch_2)
  assert sorted(p.name for p in (tmp_path / "checkpoints" / "fa").iterdir() if p.name.isdigit()) == ["0", "1"]
  assert not (tmp_path / "features" / "fa" / "epoch_0002.npz").exists()
  assert not (tmp_path / "checkpoints" / "pc").exists() and not (tmp_path / "results" / "alignment.csv").exists()
  bp_log = (tmp_path / "logs" / "bp" / "epoch_0002.json").stat().st_mtime_ns
  pipeline.run(_tiny_demo(cache_dir), str(tmp_path))
  assert (tmp_path / "logs" / "bp" / "epoch_0002.json").stat().st_mtime_ns == bp_log  # BP not retrained
  for rule in ("bp", "fa", "pc", "stdp"):
    assert sorted(p.name for p in (tmp_path / "checkpoints" / rule).iterdir() if p.name.isdigit()) == ["0", "1", "2"]
  want, got = _read_tables(uninterrupted), _read_tables(tmp_path)
  for name in want:
    pd.testing.assert_frame_equal(got[name], want[name], check_exact=True)


def _write_fixture_images(fixture, images_dir):
  rng = np.random.default_rng(0)
  for stim in fixture["expected_stimuli"]:
    path = pathlib.Path(images_dir) / "object_images" / stim.rsplit("_", 1)[0] / stim
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)  # non-square, like THINGS


def test_real_data_path_scores_match_scipy_on_fixture_files(tmp_path):
  """With THINGS-format fixture files and images (the real-data path of configs/paper.py): the saved model RDMs
  equal scipy's pdist of the saved features (float64), and each alignment row equals scipy's Spearman between
  that RDM and the loaded subject/ROI RDM, so the tidy rows carry the right labels and the stimulus order of
  images and brain agree. (Spearman is taken on the saved float32 RDM: near-ties of a float64 pdist may order
  differently, which moves rho by ~1e-4 on 780 pairs, a property of the input precision, not of the RSA.)"""
  fixture = things_fixture.write_fixture(tmp_path / "fmri")
  _write_fixture_images(fixture, tmp_path / "images")
  c = paper.get_config("tiny")
  c.rules = ("random",)
  c.data.source, c.data.normalization, c.data.num_test = "fashion_mnist_demo", "train_set", 100
  c.brain.betas_dir, c.brain.images_dir = str(fixture["betas_dir"]), str(tmp_path / "images")
  c.eval.resolutions = (32,)
  workdir = tmp_path / "run"
  pipeline.run(c, str(workdir))
  a = pd.read_csv(workdir / "results" / "alignment.csv")
  assert set(a.data) == {"things-fmri"}
  brain = things.load_things_fmri(fixture["betas_dir"])
  assert brain.stimuli == fixture["expected_stimuli"]
  with np.load(workdir / "features" / "random" / "epoch_0000.npz") as z:
    feats = {k: z[k] for k in z.files}
  layers = ("conv1", "conv2", "conv3", "fc1")
  with np.load(workdir / "rdms" / "random" / "32px.npz") as z:  # the documented model-RDM format
    assert z["vectors"].shape == (len(c.seeds), 1, 4, len(brain.stimuli) * (len(brain.stimuli) - 1) // 2)
    assert tuple(z["stimuli"]) == brain.stimuli and tuple(z["layers"]) == layers
    saved = z["vectors"][:, 0]  # [seeds, layers, pairs]
  for k in range(len(c.seeds)):
    for li, layer in enumerate(layers):
      np.testing.assert_allclose(
        saved[k, li], spatial.distance.pdist(feats[f"32px/{layer}"][k].astype(np.float64), "correlation"), atol=1e-5
      )
  keep = things.cross_run_mask(brain.runs)
  for pairs, mask in (("all", np.ones_like(keep)), ("cross_run", keep)):
    for k, seed in enumerate(c.seeds):
      for layer in ("conv1", "fc1"):
        model_rdm = saved[k, layers.index(layer)].astype(np.float64)
        for r, roi in enumerate(brain.rois):
          for s, subject in enumerate(brain.subjects):
            want = stats.spearmanr(model_rdm[mask], brain.rdm_vectors[s, r][mask]).statistic
            got = a[
              (a.seed == seed) & (a.layer == layer) & (a.roi == roi) & (a.subject == subject) & (a.pairs == pairs)
            ].rho.item()
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_corrupt_checkpoint_gives_an_error_naming_it(uninterrupted, tmp_path, cache_dir):
  """A truncated checkpoint is reported with its folder and what to do, not a bare Orbax traceback."""
  import shutil

  from brainalign import checkpointing

  workdir = tmp_path / "copy"
  shutil.copytree(uninterrupted, workdir)
  for f in (workdir / "checkpoints" / "bp" / "2").rglob("*"):
    if f.is_file() and f.stat().st_size > 0:
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
  with pytest.raises(checkpointing.CheckpointError, match=r"checkpoints/bp/2"):
    pipeline.run(_tiny_demo(cache_dir), str(workdir))
