"""brainalign.stats against independent oracles: rsatoolbox 0.3.2, SciPy, statsmodels, NumPy loops.

Small shapes only (n <= 30 stimuli) so the whole file runs in well under two minutes on a shared 2-core CPU.
"""

import itertools

import jax
import numpy as np
import pytest
import scipy.stats
from rsatoolbox.inference import boot_noise_ceiling, eval_bootstrap_pattern
from rsatoolbox.model import ModelFixed
from rsatoolbox.rdm import RDMs, compare
from statsmodels.stats.multitest import multipletests

from brainalign import ranks, rsa, stats


def _vectors(rng, n, count, ties=False):
  """count RDM vectors over n stimuli (correlated through a shared latent); ties=True rounds them."""
  p = n * (n - 1) // 2
  base = rng.standard_normal(p)
  v = 0.5 * base + rng.standard_normal((count, p))
  return np.round(v, 0) if ties else v


@pytest.fixture(scope="module")
def toy():
  """5 model vectors (two with ties) and brain [3 subjects, 2 ROIs] (one ROI with ties), n = 12."""
  rng = np.random.default_rng(0)
  n = 12
  model = _vectors(rng, n, 5)
  model[3:] = np.round(model[3:], 0)
  brain = _vectors(rng, n, 6).reshape(3, 2, -1)
  brain[:, 1] = np.round(brain[:, 1] * 2, 0)
  return n, model.astype(np.float32), brain.astype(np.float32)


@pytest.mark.parametrize("method", stats.COMPARATORS)
def test_comparators_equal_rsatoolbox_compare(toy, method):
  """Every comparator equals rsatoolbox's `compare` of the same name, ties included."""
  _, model, brain = toy
  y = brain.reshape(-1, brain.shape[-1])
  got = np.asarray(stats.compare(model, y, method))
  want = compare(RDMs(model.astype(np.float64)), RDMs(y.astype(np.float64)), method)
  np.testing.assert_allclose(got, want, atol=2e-6)


def test_spearman_equals_scipy_and_nan_propagates(toy):
  """spearman = scipy.stats.spearmanr for every pair; a vector with a NaN gives NaN, not a number."""
  _, model, brain = toy
  y = brain.reshape(-1, brain.shape[-1])
  got = np.asarray(stats.compare(model, y, "spearman"))
  want = np.array([[scipy.stats.spearmanr(a, b)[0] for b in y] for a in model])
  np.testing.assert_allclose(got, want, atol=2e-6)
  bad = model.copy()
  bad[1, 4] = np.nan
  out = np.asarray(stats.compare(bad, y, "spearman"))
  assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2, 3, 4]]).all()


def test_unknown_comparator_is_an_error(toy):
  """Typos (and rsatoolbox comparators brainalign does not offer) fail with a message naming the valid ones."""
  _, model, brain = toy
  for bad in ("tau_a", "kendall"):
    with pytest.raises(ValueError, match="spearman"):
      stats.compare(model, model, bad)


def _tau_a_brute(x, y, w=None):
  """O(P^2) tau-a of the expanded vector (entry u repeated w_u times): sum sign(dx) sign(dy) over all
  pairs of copies / (N (N - 1) / 2), with NumPy."""
  if w is not None:
    x, y = np.repeat(x, w), np.repeat(y, w)
  iu = np.triu_indices(len(x), 1)
  s = np.sign(x[:, None] - x[None])[iu] * np.sign(y[:, None] - y[None])[iu]
  return s.sum() / len(s)


def test_tau_a_equals_brute_force_counts_with_ties_and_weights():
  """tau-a = the brute-force pair count for heavy ties in x, in y and in both, for odd and tiny
  lengths, and with integer weights (= the explicitly expanded vector: copies tied with each other)."""
  rng = np.random.default_rng(21)
  for p in (2, 3, 5, 64, 257):
    x = np.round(rng.standard_normal((2, p)) * 1.5)
    y = np.round(0.5 * x[0] + rng.standard_normal((3, p)) * 1.5)
    want = np.array([[_tau_a_brute(a, b) for b in y] for a in x])
    np.testing.assert_allclose(stats.tau_a(x, y), want, atol=1e-6)
  p = 200
  x = np.round(rng.standard_normal(p) * 2)
  y = np.round(0.5 * x + rng.standard_normal(p) * 2)
  w = rng.integers(0, 4, p)  # 0 = not drawn
  assert float(stats.tau_a(x, y, weights=w)[0, 0]) == pytest.approx(_tau_a_brute(x, y, w), abs=1e-6)
  assert np.isnan(np.asarray(stats.tau_a(np.array([[1.0, np.nan, 2.0]]), np.array([[1.0, 2.0, 3.0]])))).all()


def test_tau_a_at_paper_size_is_exact_beyond_int32():
  """At the paper's P = 258,840 pairs (P(P-1)/2 ~ 3.3e10 pairs of pairs, beyond int32) and with many
  ties, tau-a equals rsatoolbox's `_tau_a` (scipy's exact int64 merge-sort counts) to float32 precision."""
  from rsatoolbox.rdm.compare import _tau_a

  rng = np.random.default_rng(3)
  p = 258_840
  x = rng.standard_normal(p).astype(np.float32)
  y = np.round(0.3 * x + rng.standard_normal(p), 2).astype(np.float32)  # ~700 distinct values: heavy ties
  got = np.asarray(stats.tau_a(np.stack([x, np.round(x, 1)]), y[None]))[:, 0]
  y64 = y.astype(np.float64)
  want = [_tau_a(x.astype(np.float64), y64), _tau_a(np.round(x, 1).astype(np.float64), y64)]
  np.testing.assert_allclose(got, want, atol=2e-7)


@pytest.mark.parametrize("method", stats.COMPARATORS)
def test_noise_ceiling_equals_rsatoolbox(toy, method):
  """Lower (leave-one-subject-out) and upper bounds equal rsatoolbox's boot_noise_ceiling per ROI,
  including its comparator-specific pooling (ranks averaged for spearman / rho-a)."""
  _, _, brain = toy
  lower, upper = stats.noise_ceiling(brain, method)
  for r in range(brain.shape[1]):
    want_lo, want_up = boot_noise_ceiling(RDMs(brain[:, r].astype(np.float64)), method=method)
    np.testing.assert_allclose([lower[r], upper[r]], [want_lo, want_up], atol=2e-6)


def test_noise_ceiling_spearman_equals_direct_formula(toy):
  """Nili bounds from the definition (docs/methods.md §8.5), rank pooling written out with SciPy."""
  _, _, brain = toy
  x = brain[:, 0].astype(np.float64)
  ranks = np.array([scipy.stats.rankdata(v) for v in x])
  s = len(x)
  lower = np.mean([scipy.stats.spearmanr(x[k], ranks[np.arange(s) != k].mean(0))[0] for k in range(s)])
  upper = np.mean([scipy.stats.spearmanr(x[k], ranks.mean(0))[0] for k in range(s)])
  got = stats.noise_ceiling(brain, "spearman")
  np.testing.assert_allclose([got[0][0], got[1][0]], [lower, upper], atol=2e-6)


def _loop_oracle(model, brain, runs, idx, n):
  """Explicit stimulus bootstrap (docs/methods.md §8.6), one resample at a time: index both RDMs by the
  resample, keep position pairs a < b whose original stimuli differ and lie in different runs for
  every subject, Spearman with SciPy; per-subject rho [V, R, S]."""
  ms = [scipy.spatial.distance.squareform(v) for v in model]
  bs = [[scipy.spatial.distance.squareform(brain[s, r]) for r in range(brain.shape[1])] for s in range(len(brain))]
  a, b = np.triu_indices(n, 1)
  oa, ob = idx[a], idx[b]
  keep = (oa != ob) & np.all(runs[:, oa] != runs[:, ob], axis=0)
  out = np.empty((len(model), brain.shape[1], len(brain)))
  for v, m in enumerate(ms):
    for r in range(brain.shape[1]):
      for s in range(len(brain)):
        out[v, r, s] = scipy.stats.spearmanr(m[oa, ob][keep], bs[s][r][oa, ob][keep])[0]
  return out


def test_bootstrap_equals_explicit_resampling_on_cross_run_pairs(toy):
  """Every resample's rho equals the explicit loop: duplicated stimuli's self-pairs dropped, the
  cross-run set recomputed on the resampled pairs, nothing else changed."""
  n, model, brain = toy
  rng = np.random.default_rng(1)
  runs = rng.integers(0, 3, (3, n))
  i, j = rsa.pair_indices(n)
  keep = np.all(runs[:, i] != runs[:, j], axis=0)
  flat = np.flatnonzero(keep)
  idx = np.asarray(stats.draw_resamples(jax.random.key(3), 4, n))
  out = stats.bootstrap_rsa(model[:, flat], brain[..., flat], (i[flat], j[flat]), idx, n=n)
  for b in range(len(idx)):
    want = _loop_oracle(model, brain, runs, idx[b], n)
    np.testing.assert_allclose(np.asarray(out["rho"][b]), want, atol=3e-6)


@pytest.mark.parametrize("method", stats.COMPARATORS)
def test_bootstrap_resamples_equal_rsatoolbox_subsample_pattern(toy, method):
  """With the same indices, rho and both ceiling bounds equal rsatoolbox's subsample_pattern +
  compare / boot_noise_ceiling (its NaN self-pairs dropped), for every comparator."""
  n, model, brain = toy
  i, j = rsa.pair_indices(n)
  idx = np.asarray(stats.draw_resamples(jax.random.key(5), 3, n))
  out = stats.bootstrap_rsa(model, brain, (i, j), idx, n=n, method=method, model_chunk=2)
  if method in ("spearman", "rho-a"):  # the sort-plan ranking (the default from 64 resamples) is identical
    planned = stats.bootstrap_rsa(model, brain, (i, j), idx, n=n, method=method, model_chunk=2, rank_plan=True)
    for key in out:
      np.testing.assert_allclose(planned[key], out[key], atol=1e-6)
  for b in range(len(idx)):
    ms = RDMs(model.astype(np.float64)).subsample_pattern("index", idx[b])
    for r in range(brain.shape[1]):
      bs = RDMs(brain[:, r].astype(np.float64)).subsample_pattern("index", idx[b])
      np.testing.assert_allclose(np.asarray(out["rho"][b, :, r, :]), compare(ms, bs, method), atol=3e-6)
      lo, up = boot_noise_ceiling(bs, method=method)
      np.testing.assert_allclose([out["noise_lower"][b, r], out["noise_upper"][b, r]], [lo, up], atol=3e-6)


def test_identity_resample_is_the_plain_statistic(toy):
  """The identity row reproduces compare() and noise_ceiling(); chunking does not change results;
  a fixed key gives the same resamples."""
  n, model, brain = toy
  i, j = rsa.pair_indices(n)
  idx = np.concatenate([stats.identity_resample(n), stats.draw_resamples(jax.random.key(0), 3, n)])
  a = stats.bootstrap_rsa(model, brain, (i, j), idx, n=n, model_chunk=5, batch_size=1)
  b = stats.bootstrap_rsa(model, brain, (i, j), idx, n=n, model_chunk=2, batch_size=2)
  np.testing.assert_allclose(a["rho"], b["rho"], atol=1e-6)
  y = brain.transpose(1, 0, 2).reshape(-1, brain.shape[-1])  # [R * S, P]
  want = np.asarray(stats.compare(model, y)).reshape(len(model), brain.shape[1], brain.shape[0])
  np.testing.assert_allclose(a["rho"][0], want, atol=1e-6)
  lo, up = stats.noise_ceiling(brain)
  np.testing.assert_allclose(a["noise_lower"][0], lo, atol=1e-6)
  np.testing.assert_allclose(a["noise_upper"][0], up, atol=1e-6)
  np.testing.assert_array_equal(stats.draw_resamples(jax.random.key(0), 3, n), idx[1:])


def test_bootstrap_distribution_matches_rsatoolbox_eval_bootstrap_pattern():
  """Mean and SD of the bootstrap distribution (model rho and lower ceiling) agree with rsatoolbox's
  own eval_bootstrap_pattern (its own RNG, same N = 300) within Monte Carlo error: |mean diff| < 4 SE,
  SD ratio within 25 % (SE of an SD ~ SD / sqrt(2N) = 4 %, so 25 % is > 4 SE of the ratio)."""
  rng = np.random.default_rng(7)
  n, count = 24, 300
  latent = rng.standard_normal((n, 3))
  feats = latent @ rng.standard_normal((3, 10)) + rng.standard_normal((n, 10))
  model = scipy.spatial.distance.pdist(feats, "correlation")[None].astype(np.float32)
  vox = np.stack([latent @ rng.standard_normal((3, 15)) + 1.5 * rng.standard_normal((n, 15)) for _ in range(3)])
  brain = np.stack([scipy.spatial.distance.pdist(v, "correlation") for v in vox])[:, None].astype(np.float32)
  np.random.seed(0)  # rsatoolbox draws from NumPy's global generator
  res = eval_bootstrap_pattern(
    ModelFixed("m", RDMs(model.astype(np.float64))), RDMs(brain[:, 0].astype(np.float64)), method="spearman", N=count
  )
  theirs = np.asarray(res.evaluations)[:, 0]
  their_lower = np.asarray(res.noise_ceiling)[0]
  i, j = rsa.pair_indices(n)
  out = stats.bootstrap_rsa(model, brain, (i, j), stats.draw_resamples(jax.random.key(11), count, n), n=n)
  ours = np.asarray(out["rho"][:, 0, 0, :]).mean(-1)  # subject mean, as rsatoolbox
  our_lower = np.asarray(out["noise_lower"][:, 0])
  for a, b in ((ours, theirs), (our_lower, their_lower)):
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    se = np.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(a.mean() - b.mean()) < 4 * se
    assert 0.75 < a.std() / b.std() < 1.25


def test_bootstrap_coverage_on_a_simulated_brain():
  """95 % percentile intervals cover the simulation's true value in roughly 95 % of repetitions.

  Simulated brain: stimuli are i.i.d. 4-d latents; model features and three subjects' voxels are
  noisy linear read-outs of them (correlation RDMs). True value = subject-mean Spearman rho on 400
  fresh stimuli from the same population (79,800 pairs, a close stand-in for the infinite-stimulus
  value). 120 repetitions, each with n = 30 stimuli and B = 200 resamples. Observed coverage when
  written: 0.92 (110/120); the assertion allows 0.85-0.99 (the binomial SE at 120 reps is 2 %).
  """
  rng = np.random.default_rng(2026)
  k, d, v = 4, 12, 20
  a_model = rng.standard_normal((k, d))
  a_brain = rng.standard_normal((3, k, v))

  def sample(m):
    z = rng.standard_normal((m, k))
    f = z @ a_model + 1.0 * rng.standard_normal((m, d))
    b = np.einsum("mk,skv->smv", z, a_brain) + 2.0 * rng.standard_normal((3, m, v))
    fm = scipy.spatial.distance.pdist(f, "correlation")
    bm = np.stack([scipy.spatial.distance.pdist(x, "correlation") for x in b])
    return fm[None].astype(np.float32), bm[:, None].astype(np.float32)

  big_m, big_b = sample(400)
  truth = float(np.asarray(stats.compare(big_m, big_b[:, 0], "spearman")).mean())
  n, reps = 30, 120
  i, j = rsa.pair_indices(n)
  keys = jax.random.split(jax.random.key(99), reps)
  covered = 0
  for r in range(reps):
    m, b = sample(n)
    out = stats.bootstrap_rsa(m, b, (i, j), stats.draw_resamples(keys[r], 200, n), n=n)
    lo, hi = stats.percentile_ci(np.asarray(out["rho"][:, 0, 0, :]).mean(-1), 0.95)
    covered += int(lo <= truth <= hi)
  coverage = covered / reps
  assert 0.85 <= coverage <= 0.99, coverage


def test_percentile_ci_and_bootstrap_p():
  """Percentile CI = NumPy percentiles; two-sided p = (2 min(#<=0, #>=0) + 1) / (B + 1), capped at 1."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((999, 3))
  lo, hi = stats.percentile_ci(x, 0.9)
  np.testing.assert_allclose(lo, np.percentile(x, 5, axis=0))
  np.testing.assert_allclose(hi, np.percentile(x, 95, axis=0))
  d = np.array([[-1.0, 1.0, 0.0], [0.5, 2.0, 0.0], [0.2, 3.0, 0.0], [0.1, 4.0, 0.0]])
  # column 0: #<=0 = 1, #>=0 = 3 -> (2 + 1) / 5; column 1: 0 -> 1 / 5; column 2: all ties -> capped at 1
  np.testing.assert_allclose(stats.bootstrap_p_two_sided(d), [3 / 5, 1 / 5, 1.0])


def test_sign_flip_p_equals_brute_force_enumeration():
  """Exact one-sided p equals enumerating all 2^K sign vectors with itertools; 5 positive -> 1/32."""
  rng = np.random.default_rng(4)
  d = rng.standard_normal((40, 5))
  want = []
  for row in d:
    null = [np.mean(np.array(s) * row) for s in itertools.product((1, -1), repeat=5)]
    want.append(np.mean(np.array(null) >= row.mean() - 1e-12))
  np.testing.assert_allclose(stats.sign_flip_p(d), want)
  assert stats.sign_flip_p(np.array([0.1, 0.2, 0.3, 0.4, 0.5])) == pytest.approx(1 / 32)


def test_bh_and_holm_equal_statsmodels():
  """BH-FDR and Holm adjusted p equal statsmodels' multipletests on random p-values (ties included)."""
  rng = np.random.default_rng(8)
  for m in (1, 7, 40):
    p = rng.uniform(0, 0.2, m) ** 2
    if m > 3:
      p[:2] = p[2]  # ties
    np.testing.assert_allclose(stats.bh_fdr(p), multipletests(p, method="fdr_bh")[1], atol=1e-12)
    np.testing.assert_allclose(stats.holm(p), multipletests(p, method="holm")[1], atol=1e-12)
  with pytest.raises(ValueError, match="NaN"):
    stats.bh_fdr(np.array([0.1, np.nan]))


def test_cohens_d_formulas():
  """Averaged-variance d (docs/methods.md §8.9) and paired d_z, from the formulas with NumPy."""
  a, b = np.array([0.07, 0.08, 0.06, 0.09, 0.075]), np.array([0.03, 0.035, 0.025, 0.04, 0.03])
  want = (a.mean() - b.mean()) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
  assert stats.cohens_d(a, b) == pytest.approx(want)
  assert stats.cohens_dz(a - b) == pytest.approx((a - b).mean() / (a - b).std(ddof=1))


def test_partial_spearman_equals_direct_numpy():
  """Reference form = rank, centre, residualise on the control by least squares, Spearman of the
  residuals; closed form = the textbook formula on ranks. A control equal to the model leaves nothing:
  NaN (undefined), not a number made of rounding."""
  rng = np.random.default_rng(12)
  p = 190
  z = rng.standard_normal(p)
  x = 0.6 * z + rng.standard_normal((3, p))
  y = 0.4 * z + 0.3 * x[0] + rng.standard_normal((2, p))

  def resid(v):
    rv, rz = scipy.stats.rankdata(v), scipy.stats.rankdata(z)
    rv, rz = rv - rv.mean(), rz - rz.mean()
    beta = np.linalg.lstsq(rz[:, None], rv, rcond=None)[0]
    return rv - rz * beta[0]

  want_ref = np.array([[scipy.stats.spearmanr(resid(a), resid(b))[0] for b in y] for a in x])
  r = lambda a, b: scipy.stats.spearmanr(a, b)[0]
  want_closed = np.array(
    [[(r(a, b) - r(a, z) * r(b, z)) / np.sqrt((1 - r(a, z) ** 2) * (1 - r(b, z) ** 2)) for b in y] for a in x]
  )
  np.testing.assert_allclose(stats.partial_spearman(x, y, z, form="reference"), want_ref, atol=2e-6)
  np.testing.assert_allclose(stats.partial_spearman(x, y, z, form="closed"), want_closed, atol=2e-6)
  assert np.isnan(stats.partial_spearman(z[None], y, z, form="closed")).all()


def test_pixel_and_luminance_rdms():
  """Pixel RDM = pdist(flattened images, 'correlation'); luminance RDM = |Rec.709 mean luma difference|."""
  rng = np.random.default_rng(0)
  imgs = rng.uniform(size=(6, 4, 4, 3)).astype(np.float32)
  i, j = rsa.pair_indices(6)
  np.testing.assert_allclose(
    stats.pixel_rdm_vector(imgs, (i, j)),
    scipy.spatial.distance.pdist(imgs.reshape(6, -1).astype(np.float64), "correlation"),
    atol=1e-6,
  )
  y = (0.2126 * imgs[..., 0] + 0.7152 * imgs[..., 1] + 0.0722 * imgs[..., 2]).mean(axis=(1, 2))
  np.testing.assert_allclose(stats.luminance_rdm_vector(imgs, (i, j)), np.abs(y[i] - y[j]), atol=1e-6)


def test_partial_spearman_bootstrap_identity_and_explicit_resampling():
  """Bootstrap of partial RSA: the identity resample equals `partial_spearman` (both forms); every other
  resample, and hence the bootstrap mean and SD, equals a slow NumPy/SciPy bootstrap of the direct
  computation (index the RDMs by the same resample indices, drop duplicated stimuli's self-pairs, rank,
  centre, residualise on the control's ranks by least squares, Spearman of the residuals)."""
  rng = np.random.default_rng(12)
  n = 12
  p = n * (n - 1) // 2
  z = rng.standard_normal(p)
  x = 0.6 * z + rng.standard_normal((3, p))
  x[2] = np.round(x[2])  # ties
  y = 0.4 * z + 0.3 * x[0] + rng.standard_normal((2, p))
  x, y, z = x.astype(np.float32), y.astype(np.float32), z.astype(np.float32)
  i, j = rsa.pair_indices(n)
  b_count = 25
  idx = np.concatenate([stats.identity_resample(n), stats.draw_resamples(jax.random.key(4), b_count, n)])
  out = stats.bootstrap_partial(x, y, np.stack([z, np.round(z)]), (i, j), idx, n=n)
  assert out["reference"].shape == (b_count + 1, 2, 3, 2)
  for form in stats.PARTIAL_FORMS:
    for c, control in enumerate((z, np.round(z))):
      np.testing.assert_allclose(out[form][0, c], stats.partial_spearman(x, y, control, form=form), atol=2e-6)

  a, b = np.triu_indices(n, 1)

  def direct(xv, yv, ids):
    oa, ob = ids[a], ids[b]
    keep = oa != ob
    pick = lambda v: scipy.spatial.distance.squareform(v.astype(np.float64))[oa, ob][keep]
    xe, ye, ze = pick(xv), pick(yv), pick(z)

    def resid(v):
      rv, rz = scipy.stats.rankdata(v), scipy.stats.rankdata(ze)
      rv, rz = rv - rv.mean(), rz - rz.mean()
      return rv - rz * np.linalg.lstsq(rz[:, None], rv, rcond=None)[0][0]

    return scipy.stats.spearmanr(resid(xe), resid(ye))[0]

  want = np.array([[[direct(xv, yv, idx[k]) for yv in y] for xv in x] for k in range(1, b_count + 1)])  # [B, 3, 2]
  got = np.asarray(out["reference"][1:, 0], np.float64)
  np.testing.assert_allclose(got, want, atol=3e-6)
  np.testing.assert_allclose(got.mean(0), want.mean(0), atol=1e-6)
  np.testing.assert_allclose(got.std(0, ddof=1), want.std(0, ddof=1), atol=1e-6)


@pytest.mark.parametrize("method", ["spearman", "corr"])
def test_bootstrap_mean_rdm_convention_equals_rsatoolbox(toy, method):
  """mean_rdm=True: rho with the subject-mean RDM (element-wise mean of the subjects' dissimilarities, P1
  v1/v2) equals rsatoolbox's compare against that mean RDM, on the identity and on resampled stimuli
  (subsample_pattern with the same indices); the per-subject rho and ceilings are unchanged by the option."""
  n, model, brain = toy
  i, j = rsa.pair_indices(n)
  idx = np.concatenate([stats.identity_resample(n), stats.draw_resamples(jax.random.key(8), 2, n)])
  out = stats.bootstrap_rsa(model, brain, (i, j), idx, n=n, method=method, mean_rdm=True)
  plain = stats.bootstrap_rsa(model, brain, (i, j), idx, n=n, method=method)
  for k in ("rho", "noise_lower", "noise_upper"):
    np.testing.assert_allclose(out[k], plain[k], atol=1e-7)
  mean = brain.astype(np.float64).mean(0)  # [R, P]
  for b in range(len(idx)):
    ms = RDMs(model.astype(np.float64)).subsample_pattern("index", idx[b])
    want = compare(ms, RDMs(mean).subsample_pattern("index", idx[b]), method)  # [V, R]
    np.testing.assert_allclose(out["rho_mean_rdm"][b], want, atol=3e-6)


def test_weighted_ranks_equal_scipy_ranks_of_the_expanded_vector():
  """Both ranking kernels (the histogram and the sorted-prefix-sum plan used by the bootstrap, in its tie-free
  and its tied branch) give every entry the average rank that scipy.stats.rankdata gives its copies in the
  vector expanded by the weights (ties, zero weights and a large weight included)."""
  rng = np.random.default_rng(7)
  w = rng.integers(0, 4, 200).astype(np.float32)
  w[:5] = 0.0
  w[5] = 50.0
  for v in (np.round(rng.standard_normal(200) * 3), rng.standard_normal(200)):  # many ties; none
    v = v.astype(np.float32)
    expanded = scipy.stats.rankdata(np.repeat(v, w.astype(int)))  # copies of entry u are contiguous
    want = expanded[np.cumsum(w[w > 0]).astype(int) - 1]  # every copy has the same (average) rank
    keys = ranks.order_keys(jax.numpy.asarray(v)[None])
    hist = np.asarray(ranks.weighted_ranks(keys[0], w, 201))
    plan = tuple(a[0] for a in ranks.rank_plan(keys))
    planned = np.asarray(ranks.planned_ranks(plan, w))
    np.testing.assert_array_equal(hist[w > 0], want)
    np.testing.assert_array_equal(planned[w > 0], want)


@pytest.mark.parametrize("capacity", [None, 6])
def test_rank_plan_is_numpy_stable_argsort_and_searchsorted_on_every_branch(monkeypatch, capacity):
  """The plan of each vector (no ties; a few; more than PLAN_TIE_CAPACITY, the key/value-sort branch when the
  capacity is lowered to 6) equals numpy's stable argsort and the searchsorted bounds of each entry's run."""
  if capacity is not None:
    monkeypatch.setattr(ranks, "PLAN_TIE_CAPACITY", capacity)
  rng = np.random.default_rng(3)
  few = rng.standard_normal(400)
  few[[3, 50, 51, 399]] = few[7]  # one tie run of 5 entries
  vectors = np.stack([rng.permutation(400), few, np.round(rng.standard_normal(400) * 4)]).astype(np.float32)
  keys = np.asarray(ranks.order_keys(jax.numpy.asarray(vectors)))
  order, lo, hi = (np.asarray(a) for a in ranks.rank_plan(jax.numpy.asarray(keys)))
  for r, k in enumerate(keys):
    want = np.argsort(k, kind="stable")
    s = k[want]
    np.testing.assert_array_equal(order[r], want)
    np.testing.assert_array_equal(lo[r], np.searchsorted(s, k, "left"))
    np.testing.assert_array_equal(hi[r], np.searchsorted(s, k, "right"))


@pytest.mark.parametrize("rank_plan", [False, True])
def test_chunked_bootstrap_equals_one_call_and_reports_progress(toy, rank_plan):
  """The report's progress runs the bootstraps a few resamples per call (the last chunk padded): every row is
  the same number as in one call over all rows (RSA, ceiling, mean-RDM and both partial forms), and progress
  is told the rows done after each call, up to all of them."""
  n, model, brain = toy
  i, j = rsa.pair_indices(n)
  idx = np.concatenate([stats.identity_resample(n), stats.draw_resamples(jax.random.key(9), 10, n)])  # 11 rows
  whole = stats.bootstrap_rsa(model, brain, (i, j), idx, n=n, mean_rdm=True, rank_plan=rank_plan)
  calls = []
  chunked = stats.bootstrap_rsa(
    model, brain, (i, j), idx, n=n, mean_rdm=True, rank_plan=rank_plan, chunk=4, progress=lambda *a: calls.append(a)
  )
  assert calls == [(4, 11), (8, 11), (11, 11)]
  for k in whole:
    assert chunked[k].shape == whole[k].shape
    np.testing.assert_array_equal(np.asarray(chunked[k]), np.asarray(whole[k]), err_msg=k)
  controls = np.stack([model[0], np.round(model[1])])
  y = brain.reshape(-1, brain.shape[-1])
  one = stats.bootstrap_partial(model[2:], y, controls, (i, j), idx, n=n)
  calls.clear()
  parts = stats.bootstrap_partial(
    model[2:], y, controls, (i, j), idx, n=n, chunk=5, progress=lambda *a: calls.append(a)
  )
  assert calls == [(5, 11), (10, 11), (11, 11)]
  for form in stats.PARTIAL_FORMS:
    np.testing.assert_array_equal(np.asarray(parts[form]), np.asarray(one[form]))
