"""Tests of the simulated THINGS-fMRI brain (brainalign.data.simulate).

Inputs are Fashion-MNIST-like synthetic images made here with numpy: six categories of simple
shapes (bars of three orientations, disc, ring, cross) with random position, size, intensity and an
internal grating texture, so low-level structure varies within a category. Everything is read back
through the real loader, ``brainalign.data.things.load_things_fmri``.
"""

import dataclasses
import hashlib

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.signal
import scipy.stats
from scipy.spatial.distance import pdist

from brainalign.data import simulate, things
from brainalign.data.things_writer import default_stimulus_name

N_CONCEPTS = 60
N_CLASSES = 6
# Small: 5 runs of 12 concepts, 2 sessions, 5 test images, fewer voxels. With 60 instead of 720
# stimuli and ~1/3 of the voxels, RDM comparisons are much noisier, so the signal is doubled
# (noise_sd and run_offset_sd stay at their defaults).
SMALL = simulate.SimulationConfig(
  n_runs=5,
  n_test_concepts=5,
  roi_sizes=(("V1", 80), ("V2", 60), ("V3", 60), ("hV4", 60), ("lLOC", 40), ("rLOC", 30), ("IT", 80)),
  n_other_voxels=20,
  signal_sd=tuple((roi, 2 * sd) for roi, sd in simulate.SimulationConfig().signal_sd),
)
SUBJECTS = ("sub-01", "sub-02", "sub-03")


def _synthetic_images(n: int, *, size: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """[n, size, size] float images in [0, 1] and [n] labels (0..5, balanced), Fashion-MNIST-like."""
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % N_CLASSES
  c = (size - 1) / 2
  yy, xx = np.meshgrid(np.arange(size) - c, np.arange(size) - c, indexing="ij")
  off = rng.uniform(-3, 3, size=(n, 2))
  y = yy[None] - off[:, 0, None, None]
  x = xx[None] - off[:, 1, None, None]
  scale = rng.uniform(0.8, 1.2, size=(n, 1, 1)) * size / 28
  tilt = np.deg2rad(rng.uniform(-10, 10, size=(n, 1, 1)))
  base = np.deg2rad(np.array([90.0, 0.0, 45.0, 0.0, 0.0, 0.0]))[labels][:, None, None] + tilt
  along = x * np.cos(base) + y * np.sin(base)
  across = -x * np.sin(base) + y * np.cos(base)
  r = np.hypot(x, y)
  bar = (np.abs(along) < 9 * scale) & (np.abs(across) < 2.5 * scale)
  shapes = {
    0: bar,
    1: bar,
    2: bar,
    3: r < 8 * scale,
    4: (r < 10 * scale) & (r > 6.5 * scale),
    5: ((np.abs(x) < 2.5 * scale) | (np.abs(y) < 2.5 * scale)) & (np.abs(x) < 9 * scale) & (np.abs(y) < 9 * scale),
  }
  mask = np.zeros((n, size, size), bool)
  for k, m in shapes.items():
    mask[labels == k] = m[labels == k]
  phi = rng.uniform(0, np.pi, size=(n, 1, 1))
  freq = rng.uniform(0.12, 0.3, size=(n, 1, 1))
  texture = 0.65 + 0.35 * np.sin(2 * np.pi * freq * (xx * np.cos(phi) + yy * np.sin(phi)))
  intensity = rng.uniform(0.6, 1.0, size=(n, 1, 1))
  return np.clip(mask * texture * intensity, 0.0, 1.0), labels


# Names with the loader's pitfalls (hyphens, digits, prefix pairs), in a non-sorted order.
_SPECIAL = ["yo-yo", "ping-pong_table", "camera1", "ant", "anteater", "banana", "banana_split"]
CONCEPTS = _SPECIAL + [f"concept{i:02d}" for i in range(N_CONCEPTS - len(_SPECIAL))][::-1]


@pytest.fixture(scope="module")
def stimuli():
  return _synthetic_images(N_CONCEPTS)


@pytest.fixture(scope="module")
def simulated(stimuli, tmp_path_factory):
  """The small dataset (default seed), its folder and what the real loader makes of it."""
  images, labels = stimuli
  betas = simulate.simulate_things_fmri(images, labels, CONCEPTS, tmp_path_factory.mktemp("sim"), SMALL)
  return betas, things.load_things_fmri(betas)


def _digest(betas) -> dict[str, str]:
  """sha256 of every subject's response array and metadata CSVs."""
  out = {}
  for s in SUBJECTS:
    with h5py.File(betas / f"{s}_ResponseData.h5", "r") as f:
      values = f["ResponseData/block0_values"][()]
    out[s + "_values"] = hashlib.sha256(values.tobytes()).hexdigest()
    for name in ("StimulusMetadata", "VoxelMetadata"):
      out[f"{s}_{name}"] = hashlib.sha256((betas / f"{s}_{name}.csv").read_bytes()).hexdigest()
  return out


def _ranks(v):
  return scipy.stats.rankdata(v)


def _spearman(a, b) -> float:
  return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def test_same_seed_gives_identical_files_and_another_seed_differs(simulated, stimuli, tmp_path):
  """Determinism: the generator is a pure function of (inputs, config).

  Oracle: sha256 of the stored arrays and CSVs; a rerun with the same seed must match bit for bit,
  a different seed must change every subject's responses.
  """
  images, labels = stimuli
  again = simulate.simulate_things_fmri(images, labels, CONCEPTS, tmp_path / "a", SMALL)
  other = simulate.simulate_things_fmri(images, labels, CONCEPTS, tmp_path / "b", dataclasses.replace(SMALL, seed=1))
  ref = _digest(simulated[0])
  assert _digest(again) == ref
  changed = _digest(other)
  for s in SUBJECTS:
    assert changed[s + "_values"] != ref[s + "_values"]


def test_files_have_the_release_layout(simulated):
  """The folder holds the release's three files per subject (float64 responses) plus SIMULATED.md.

  Oracle: docs/data-formats.md §4–§6 (dataset path, dtype, shape = voxels x trials) and the config
  (2 sessions x (60 train + 5 test) trials; ROI sizes + other voxels).
  """
  betas, _ = simulated
  n_vox = sum(n for _, n in SMALL.roi_sizes) + SMALL.n_other_voxels
  n_trials = SMALL.n_sessions * (N_CONCEPTS + SMALL.n_test_concepts)
  for s in SUBJECTS:
    with h5py.File(betas / f"{s}_ResponseData.h5", "r") as f:
      ds = f["ResponseData/block0_values"]
      assert ds.dtype == np.float64 and ds.shape == (n_vox, n_trials)
      assert np.isfinite(ds[()]).all()
    md = pd.read_csv(betas / f"{s}_StimulusMetadata.csv")
    assert len(md) == n_trials and (md["trial_type"] == "test").sum() == 2 * SMALL.n_test_concepts
  note = (betas / "SIMULATED.md").read_text()
  assert "SIMULATED" in note and "not THINGS-fMRI" in note and "simulate_things_fmri" in note


def test_loader_reads_it_back_with_exemplar01_stimuli_and_shared_order(simulated):
  """Read back through the real loader: exemplar-01 stimuli in sorted-concept order; sub-01 and
  sub-02 saw them in the same order and runs (in different sessions), sub-03 in another order.

  Oracle: the design rules of docs/data-formats.md §8–§9 (selection = first exemplar per concept, sorted
  by concept; shared presentation order of sub-01/02).
  """
  betas, brain = simulated
  n = N_CONCEPTS
  assert brain.rdm_vectors.shape == (3, 6, n * (n - 1) // 2)
  assert brain.rois == ("V1", "V2", "V3", "hV4", "LOC", "IT")
  assert brain.stimuli == tuple(default_stimulus_name(c, 1) for c in sorted(CONCEPTS))
  session, run = brain.runs // 100, brain.runs % 100
  assert len(set(session[0])) == len(set(session[1])) == 1  # all _01 in one session
  assert session[0, 0] != session[1, 0]  # ... a different one per subject
  np.testing.assert_array_equal(run[0], run[1])
  assert (run[2] != run[0]).any()

  def order_01(s):
    md = pd.read_csv(betas / f"{s}_StimulusMetadata.csv")
    return md.loc[md["stimulus"].str.contains(r"_01b\.jpg$"), "concept"].tolist()

  assert order_01("sub-01") == order_01("sub-02")
  assert order_01("sub-03") != order_01("sub-01")


def _gabor_energy_rdm(images: np.ndarray) -> np.ndarray:
  """Independent oracle: spatial-domain Gabor energy (4 orientations x wavelengths 4, 8 px),
  average-pooled over 4 x 4 px blocks, correlation distance between images."""
  n, size, _ = images.shape
  feats = []
  half = 10
  yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
  for lam in (4.0, 8.0):
    sd = 0.5 * lam
    for th in np.arange(4) * np.pi / 4:
      u = xx * np.cos(th) + yy * np.sin(th)
      env = np.exp(-(xx**2 + yy**2) / (2 * sd**2))
      even = env * np.cos(2 * np.pi * u / lam)
      even -= even.mean()
      odd = env * np.sin(2 * np.pi * u / lam)
      e = scipy.signal.fftconvolve(images, even[None], mode="same", axes=(1, 2))
      o = scipy.signal.fftconvolve(images, odd[None], mode="same", axes=(1, 2))
      energy = np.sqrt(e**2 + o**2)
      feats.append(energy.reshape(n, size // 4, 4, size // 4, 4).mean(axis=(2, 4)))
  return pdist(np.stack(feats, axis=-1).reshape(n, -1), "correlation")


def test_ground_truth_is_recoverable_v1_low_level_it_categorical(simulated, stimuli):
  """V1 carries low-level (Gabor-energy) structure, IT carries category structure.

  Oracle: an independent Gabor-energy RDM of the images (spatial-domain filter bank written here)
  and the category RDM (same label 0, different 1). Subject-mean brain RDMs, Spearman.
  """
  images, labels = stimuli
  _, brain = simulated
  order = np.argsort(CONCEPTS)  # loader rows = sorted concepts
  gabor = _gabor_energy_rdm(images[order])
  category = pdist(labels[order][:, None], lambda a, b: float(a[0] != b[0]))
  mean_rank = {
    roi: np.mean([_ranks(brain.rdm_vectors[s, r]) for s in range(3)], axis=0) for r, roi in enumerate(brain.rois)
  }
  v1_gabor, it_gabor = _spearman(mean_rank["V1"], gabor), _spearman(mean_rank["IT"], gabor)
  v1_cat, it_cat = _spearman(mean_rank["V1"], category), _spearman(mean_rank["IT"], category)
  assert v1_gabor > 0.2 and v1_gabor > it_gabor + 0.1, (v1_gabor, it_gabor)
  assert it_cat > 0.2 and it_cat > v1_cat + 0.1, (it_cat, v1_cat)


def test_sub03_is_noisier(stimuli, tmp_path):
  """sub-03's higher trial noise lowers its between-subject RDM agreement in every ROI.

  Oracle: with noise_sd = (1, 1, 1.6) and no run offsets (so the shared presentation order of
  sub-01/02 cannot inflate their agreement), rho(sub-01, sub-03) and rho(sub-02, sub-03) are below
  rho(sub-01, sub-02), which is clearly positive.
  """
  images, labels = stimuli
  betas = simulate.simulate_things_fmri(
    images, labels, CONCEPTS, tmp_path, dataclasses.replace(SMALL, run_offset_sd=0.0)
  )
  v = things.load_things_fmri(betas).rdm_vectors
  for r in range(v.shape[1]):
    r12, r13, r23 = _spearman(v[0, r], v[1, r]), _spearman(v[0, r], v[2, r]), _spearman(v[1, r], v[2, r])
    assert r12 > 0.2 and max(r13, r23) < r12, (r, r12, r13, r23)


def test_same_run_pairs_are_more_similar(simulated, stimuli, tmp_path):
  """The run-level offset makes same-run pairs less dissimilar than cross-run pairs.

  Oracle: the model (a voxel pattern shared by every trial of a (session, run)). The same-run
  advantage (cross-run mean - same-run mean dissimilarity) is positive in every subject and ROI,
  and larger than in a rerun with run_offset_sd = 0, which draws identical signal and noise (same
  seed streams), so the difference isolates the offsets.
  """
  _, brain = simulated
  images, labels = stimuli
  flat = things.load_things_fmri(
    simulate.simulate_things_fmri(images, labels, CONCEPTS, tmp_path, dataclasses.replace(SMALL, run_offset_sd=0.0))
  )
  i, j = np.triu_indices(N_CONCEPTS, k=1)
  for s in range(3):
    same = brain.runs[s, i] == brain.runs[s, j]
    assert 0 < same.sum() < same.size
    gap = brain.rdm_vectors[s][:, ~same].mean(axis=1) - brain.rdm_vectors[s][:, same].mean(axis=1)
    gap0 = flat.rdm_vectors[s][:, ~same].mean(axis=1) - flat.rdm_vectors[s][:, same].mean(axis=1)
    assert (gap > 0).all(), (s, gap)
    assert (gap - gap0 > 0.01).all(), (s, gap, gap0)


def test_ground_truth_features_shapes_and_any_resolution():
  """ground_truth_features returns every ROI for a stack of any H = W >= 28, per-image for V1.

  Oracle: the documented dimensions; V1 units of an image do not depend on the other images of
  the stack (no batch coupling in the filter bank); 28-px and 56-px inputs both map to the 32-px
  model grid (same dimensions).
  """
  images, labels = _synthetic_images(12, seed=3)
  f = simulate.ground_truth_features(images, labels)
  dims = {"V1": 4096, "V2": 1024, "V3": 1536, "hV4": 640, "LOC": 119, "IT": 119}
  assert {k: v.shape for k, v in f.items()} == {k: (12, d) for k, d in dims.items()}
  assert all(np.isfinite(v).all() for v in f.values())
  part = simulate.ground_truth_features(images[:4], labels[:4])
  np.testing.assert_allclose(part["V1"], f["V1"][:4], rtol=1e-5, atol=1e-6)
  big = simulate.ground_truth_features(_synthetic_images(4, size=56, seed=3)[0], labels[:4])
  assert big["V1"].shape == (4, 4096)


def test_v1_units_prefer_their_orientation():
  """Each V1 orientation channel responds most to a grating of its own orientation.

  Oracle: closed form; a 1/4-cycle/px sinusoidal grating at angle k * 22.5 deg (wave vector
  (cos, sin) in (x, y)) drives channel k of the high-frequency bank above the other 7.
  """
  c = np.arange(32) - 15.5
  yy, xx = np.meshgrid(c, c, indexing="ij")
  thetas = np.arange(8) * np.pi / 8
  gratings = 0.5 + 0.5 * np.cos(
    2 * np.pi * 0.25 * (xx[None] * np.cos(thetas)[:, None, None] + yy[None] * np.sin(thetas)[:, None, None])
  )
  v1 = simulate.ground_truth_features(gratings, np.zeros(8, int))["V1"].reshape(8, 16, 16, 16)
  centre = v1[:, 4:12, 4:12, :8].mean(axis=(1, 2))  # [grating, orientation channel]
  np.testing.assert_array_equal(centre.argmax(axis=1), np.arange(8))


def test_rejects_inconsistent_inputs(stimuli, tmp_path):
  """Mismatched lengths or duplicate concepts fail loudly before anything is written."""
  images, labels = stimuli
  with pytest.raises(ValueError, match="one entry per concept"):
    simulate.simulate_things_fmri(images[:-1], labels, CONCEPTS, tmp_path, SMALL)
  with pytest.raises(ValueError, match="unique"):
    simulate.simulate_things_fmri(images, labels, CONCEPTS[:-1] + CONCEPTS[:1], tmp_path, SMALL)
  assert not (tmp_path / "betas_csv").exists()
