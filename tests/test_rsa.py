"""Tests for brainalign.rsa: RDMs, average ranks and the Spearman grid against SciPy oracles."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from scipy.spatial.distance import pdist, squareform

from brainalign import ranks, rsa

N = 14  # stimuli in the toy: 91 pairs
WIDTHS = (3, 5, 8)  # layer widths differ, as in the CNN (32, 64, 128, 512)
S, R = 2, 3  # subjects, ROIs
LEAD = (2, 3)  # seeds x milestones


def _toy(seed=0, n=N):
  """Features [L] of [*LEAD, n, d_l] and tied brain vectors [S, R, P] (dissimilarities rounded)."""
  rng = np.random.default_rng(seed)
  features = [rng.standard_normal((*LEAD, n, d)).astype(np.float32) for d in WIDTHS]
  voxels = rng.standard_normal((S, R, n, 6))
  i, j = np.triu_indices(n, k=1)
  brain = np.stack([[squareform(pdist(voxels[s, r], "correlation"))[i, j] for r in range(R)] for s in range(S)])
  brain = np.round(brain, 1).astype(np.float32)  # coarse values: many ties in the brain ranks
  return features, brain


def _spearman(x, y):
  """scipy.stats.spearmanr statistic in float64."""
  return scipy.stats.spearmanr(np.asarray(x, np.float64), np.asarray(y, np.float64)).statistic


def test_pair_indices_are_row_major_upper_triangle():
  """pair_indices(n) is np.triu_indices(n, k=1) as int32 (the reference pair order) [NumPy]."""
  i, j = rsa.pair_indices(6)
  want_i, want_j = np.triu_indices(6, k=1)
  assert i.dtype == np.int32 and j.dtype == np.int32
  np.testing.assert_array_equal(i, want_i)
  np.testing.assert_array_equal(j, want_j)


@pytest.mark.parametrize("metric", rsa.METRICS)
def test_rdm_equals_scipy_pdist(metric):
  """rdm(x, metric) equals squareform(pdist(x, metric)) for every leading index, to 1e-5 [SciPy].

  The leading axes ([seeds, milestones]) must be handled elementwise, and the diagonal must be an
  exact 0 as in squareform.
  """
  x = np.random.default_rng(1).standard_normal((2, 3, N, 7)).astype(np.float32)
  got = np.asarray(rsa.rdm(jnp.asarray(x), metric))
  assert got.shape == (2, 3, N, N)
  for a in range(2):
    for b in range(3):
      want = squareform(pdist(x[a, b].astype(np.float64), metric))
      np.testing.assert_allclose(got[a, b], want, atol=1e-5, rtol=1e-5)
  np.testing.assert_array_equal(np.diagonal(got, axis1=-2, axis2=-1), 0.0)


@pytest.mark.parametrize("metric", rsa.METRICS)
def test_rdm_vectors_are_pdist_condensed(metric):
  """rdm_vectors at pair_indices(n) is pdist's condensed vector (same pair order) [SciPy]."""
  x = np.random.default_rng(2).standard_normal((N, 4)).astype(np.float32)
  got = rsa.rdm_vectors(jnp.asarray(x), rsa.pair_indices(N), metric)
  np.testing.assert_allclose(got, pdist(x.astype(np.float64), metric), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("p", [1, 2, 7, 50, 333])
def test_average_ranks_equal_scipy_rankdata_with_ties(p):
  """average_ranks equals scipy.stats.rankdata(method='average') exactly, ties included [SciPy].

  Integers in 0..5 give long tie runs; -0.0 and 0.0 must tie; a batch axis is ranked row-wise.
  """
  rng = np.random.default_rng(p)
  v = rng.integers(-2, 4, size=(3, 4, p)).astype(np.float32)
  v[0, 0, 0] = -0.0
  want = scipy.stats.rankdata(v, method="average", axis=-1)
  np.testing.assert_array_equal(np.asarray(rsa.average_ranks(jnp.asarray(v))), want)
  np.testing.assert_array_equal(np.asarray(jax.jit(rsa.average_ranks)(v.astype(np.int32))), want)


def test_average_ranks_continuous_and_nan():
  """Distinct floats (signs mixed) rank as rankdata; a vector with a NaN ranks all-NaN [SciPy propagate]."""
  rng = np.random.default_rng(3)
  v = rng.standard_normal((5, 101)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(rsa.average_ranks(v)), scipy.stats.rankdata(v, axis=-1))
  v[2, 7] = np.nan
  got = np.asarray(rsa.average_ranks(v))
  assert np.isnan(got[2]).all()
  np.testing.assert_array_equal(got[[0, 1, 3, 4]], scipy.stats.rankdata(v[[0, 1, 3, 4]], axis=-1))


def test_centred_ranks_are_centred_unit_norm_ranks():
  """centred_ranks = (rankdata - mean) / norm along the last axis [SciPy + closed form]."""
  v = np.random.default_rng(4).integers(0, 6, size=(2, 60)).astype(np.float32)
  r = scipy.stats.rankdata(v, axis=-1)
  r = r - r.mean(axis=-1, keepdims=True)
  want = r / np.linalg.norm(r, axis=-1, keepdims=True)
  np.testing.assert_allclose(rsa.centred_ranks(v), want, atol=1e-6)


def test_rsa_grid_equals_scipy_spearmanr_everywhere():
  """rsa_grid[a, b, l, r, s] = spearmanr(pdist(feat_l[a, b], 'correlation'), brain[s, r]) [SciPy].

  The oracle is the reference implementation's loop; the brain has many tied dissimilarities and
  the features have leading [seeds, milestones] axes and per-layer widths. Output is [..., L, R, S].
  """
  features, brain = _toy()
  pairs = rsa.pair_indices(N)
  rho = np.asarray(rsa.rsa_grid([jnp.asarray(f) for f in features], rsa.rank_brain(brain), pairs))
  assert rho.shape == (*LEAD, len(WIDTHS), R, S)
  for a in range(LEAD[0]):
    for b in range(LEAD[1]):
      for l, f in enumerate(features):
        model = pdist(f[a, b].astype(np.float64), "correlation")
        for r in range(R):
          for s in range(S):
            assert rho[a, b, l, r, s] == pytest.approx(_spearman(model, brain[s, r]), abs=1e-5)


def test_rsa_grid_on_a_pair_subset():
  """With a boolean pair mask, model and brain are both ranked on the subset only [SciPy].

  This is the cross-run analysis: spearmanr on pdist(...)[mask] and brain[..., mask].
  """
  features, brain = _toy(seed=5)
  i, j = rsa.pair_indices(N)
  run = np.arange(N) % 3  # three "runs"; same-run pairs are dropped
  mask = run[i] != run[j]
  sub = (i[mask], j[mask])
  rho = np.asarray(rsa.rsa_grid(features, rsa.rank_brain(brain[..., mask]), sub))
  assert rho.shape == (*LEAD, len(WIDTHS), R, S)
  for a in range(LEAD[0]):
    for b in range(LEAD[1]):
      for l, f in enumerate(features):
        model = pdist(f[a, b].astype(np.float64), "correlation")[mask]
        for r in range(R):
          for s in range(S):
            assert rho[a, b, l, r, s] == pytest.approx(_spearman(model, brain[s, r, mask]), abs=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_rsa_grid_other_metrics(metric):
  """The model RDM metric is honoured: rho = spearmanr(pdist(feat, metric), brain) [SciPy]."""
  features, brain = _toy(seed=6)
  rho = np.asarray(rsa.rsa_grid(features, rsa.rank_brain(brain), rsa.pair_indices(N), metric=metric))
  for l, f in enumerate(features):
    model = pdist(f[1, 2].astype(np.float64), metric)
    assert rho[1, 2, l, 0, 1] == pytest.approx(_spearman(model, brain[1, 0]), abs=1e-5)


def test_invariant_to_monotone_transform_of_brain():
  """Spearman depends on order only: exp, cube or an affine map of a brain RDM leaves rho unchanged [math]."""
  features, brain = _toy(seed=7)
  pairs = rsa.pair_indices(N)
  base = rsa.rsa_grid(features, rsa.rank_brain(brain), pairs)
  for transform in (np.exp, lambda x: x**3, lambda x: 3.0 * x + 2.0):
    moved = rsa.rsa_grid(features, rsa.rank_brain(transform(brain.astype(np.float64)).astype(np.float32)), pairs)
    np.testing.assert_allclose(moved, base, atol=1e-6)


def test_rdm_against_its_own_ranks_gives_one():
  """An RDM compared with its own ranks gives rho = 1; with its negation rho = -1 [math]."""
  x = np.random.default_rng(8).standard_normal((N, 5)).astype(np.float32)
  vec = rsa.rdm_vectors(jnp.asarray(x), rsa.pair_indices(N))  # [P]
  brain = jnp.stack([vec, -vec])[None]  # [S=1, R=2, P]
  rho = rsa.rsa_grid([x], rsa.rank_brain(brain), rsa.pair_indices(N))
  assert rho.shape == (1, 2, 1)
  np.testing.assert_allclose(rho[0, :, 0], [1.0, -1.0], atol=1e-6)


def test_constant_feature_row_gives_nan_for_that_layer_only():
  """A constant stimulus row makes its correlation distances undefined: that layer's rho is NaN.

  Oracle: the definition (Pearson r of a constant vector is 0/0). constant_rows flags exactly that
  stimulus; other layers and other (seed, milestone) cells stay finite. A row of 0.1s is used on
  purpose: rounding of its mean leaves a tiny residue, on which SciPy returns a spurious 1.0.
  """
  features, brain = _toy(seed=9)
  features[1][0, 2, 4, :] = 0.1  # layer 1, seed 0, milestone 2, stimulus 4
  flags = np.asarray(rsa.constant_rows(features[1]))
  assert flags.shape == (*LEAD, N)
  assert flags[0, 2, 4] and flags.sum() == 1
  rdm = np.asarray(rsa.rdm(features[1][0, 2]))
  assert np.isnan(rdm[4]).all() and np.isnan(rdm[:, 4]).all()
  assert np.isfinite(np.delete(np.delete(rdm, 4, 0), 4, 1)).all()
  rho = np.asarray(rsa.rsa_grid(features, rsa.rank_brain(brain), rsa.pair_indices(N)))
  assert np.isnan(rho[0, 2, 1]).all()
  nan = np.isnan(rho)
  nan[0, 2, 1] = False
  assert not nan.any()


def test_constant_row_outside_the_pair_subset_is_harmless():
  """If no pair in use touches the constant stimulus, rho is finite and equals SciPy on the subset [SciPy]."""
  features, brain = _toy(seed=10)
  features[0][1, 1, 0, :] = 0.0
  i, j = rsa.pair_indices(N)
  keep = (i != 0) & (j != 0)
  rho = np.asarray(rsa.rsa_grid(features, rsa.rank_brain(brain[..., keep]), (i[keep], j[keep])))
  assert np.isfinite(rho).all()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # pdist divides 0/0 for the constant row
    model = pdist(features[0][1, 1].astype(np.float64), "correlation")[keep]
  assert rho[1, 1, 0, 2, 1] == pytest.approx(_spearman(model, brain[1, 2, keep]), abs=1e-5)


def test_zero_row_is_nan_for_cosine_but_fine_for_euclidean():
  """Cosine distance of an all-zero row is 0/0 (NaN, as SciPy); Euclidean stays defined [SciPy]."""
  x = np.random.default_rng(11).standard_normal((6, 4)).astype(np.float32)
  x[2] = 0.0
  cos = np.asarray(rsa.rdm(x, "cosine"))
  assert np.isnan(cos[2]).all() and np.isnan(cos[:, 2]).all()
  np.testing.assert_allclose(rsa.rdm(x, "euclidean"), squareform(pdist(x.astype(np.float64))), atol=1e-5)


def test_rsa_grid_compiles_once_for_a_new_pair_subset_of_the_same_size():
  """Pairs are traced, not static: another subset with the same P reuses the compiled grid [JAX cache]."""
  features, brain = _toy(seed=12)
  i, j = rsa.pair_indices(N)
  ranks = rsa.rank_brain(brain[..., :40])
  rsa.rsa_grid(features, ranks, (i[:40], j[:40]))
  before = rsa._rsa_grid._cache_size()
  rsa.rsa_grid(features, ranks, (i[40:80], j[40:80]))
  assert rsa._rsa_grid._cache_size() == before


def test_mismatched_inputs_raise():
  """Unknown metrics, ragged leading axes and pair-count mismatches are errors, not silent broadcasts."""
  features, brain = _toy(seed=13)
  pairs = rsa.pair_indices(N)
  ranks = rsa.rank_brain(brain)
  with pytest.raises(ValueError, match="metric"):
    rsa.rsa_grid(features, ranks, pairs, metric="spearman")
  with pytest.raises(ValueError, match="axes"):
    rsa.rsa_grid([features[0], features[1][0]], ranks, pairs)
  with pytest.raises(ValueError, match="pairs"):
    rsa.rsa_grid(features, ranks[..., :10], pairs)


@pytest.mark.parametrize("case", ["int_extremes", "huge_range", "clustered", "all_tied", "signed_zeros"])
def test_average_ranks_on_adversarial_distributions(case):
  """Exact rankdata ranks where a bucketed search could go wrong [SciPy].

  Keys at both ends of the int32 range (wrapping offsets), floats spanning 1e-30..1e30 of both
  signs (a few buckets hold almost everything), one value repeated with a few outliers (a huge tie
  run in one bucket), a constant vector, and -0.0/0.0 mixed with tiny values (normal ones: XLA on CPU flushes
  subnormals to 0).
  """
  rng = np.random.default_rng(14)
  if case == "int_extremes":
    v = rng.choice(np.array([-(2**31), -(2**31) + 1, -1, 0, 1, 2**31 - 2, 2**31 - 1], np.int32), size=(3, 500))
  elif case == "huge_range":
    v = (rng.choice([-1.0, 1.0], (3, 500)) * 10.0 ** rng.uniform(-30, 30, (3, 500))).astype(np.float32)
  elif case == "clustered":
    v = np.where(rng.random((3, 500)) < 0.95, 1.0, rng.standard_normal((3, 500)) * 1e6).astype(np.float32)
    v[:, :20] += np.float32(1e-6) * np.arange(20, dtype=np.float32)  # near-ties next to the run
  elif case == "all_tied":
    v = np.full((2, 300), 7.0, np.float32)
  else:
    v = rng.choice(np.array([-0.0, 0.0, 1e-30, -1e-30, 2e-30, -2e-30], np.float32), size=(3, 500))
  want = scipy.stats.rankdata(v, axis=-1)
  np.testing.assert_array_equal(np.asarray(rsa.average_ranks(jnp.asarray(v))), want)


def test_batched_accelerator_path_matches_scipy(monkeypatch):
  """The all-cells-at-once path used on accelerators (lax.map batch = whole batch, i.e. a vmap)
  gives the same rho as spearmanr [SciPy]; CPU runs one cell at a time, so force it here.

  Uses a stimulus count no other test uses, so nothing comes from the jit cache.
  """
  for module in (rsa, ranks):  # rsa's grid and the shared ranking both choose the batch
    monkeypatch.setattr(module, "loop_batch", lambda n: max(n, 1))
  n = 11
  features, brain = _toy(seed=15, n=n)
  v = np.random.default_rng(16).integers(0, 4, size=(3, 45)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(rsa.average_ranks(v)), scipy.stats.rankdata(v, axis=-1))
  rho = np.asarray(rsa.rsa_grid(features, rsa.rank_brain(brain), rsa.pair_indices(n)))
  for l, f in enumerate(features):
    model = pdist(f[1, 0].astype(np.float64), "correlation")
    for r in range(R):
      for s in range(S):
        assert rho[1, 0, l, r, s] == pytest.approx(_spearman(model, brain[s, r]), abs=1e-5)


def test_spearman_grid_on_vectors_equals_rsa_grid():
  """spearman_grid(stacked rdm_vectors) and the fused rsa_grid compute the same rho [brainalign, two paths].

  spearman_grid is the entry point for stored RDM vectors; it must agree with the fused per-cell path.
  """
  features, brain = _toy(seed=17)
  pairs = rsa.pair_indices(N)
  ranks = rsa.rank_brain(brain)
  vectors = jnp.stack([rsa.rdm_vectors(jnp.asarray(f), pairs) for f in features], axis=-2)  # [2, 3, L, P]
  got = rsa.spearman_grid(vectors, ranks)
  assert got.shape == (*LEAD, len(WIDTHS), R, S)
  np.testing.assert_allclose(got, rsa.rsa_grid(features, ranks, pairs), atol=1e-6)
