"""Statistics of the study (study.md §8.5-8.10): comparators, noise ceilings, the stimulus bootstrap, tests.

Everything that touches the [pairs] axis is compiled JAX; the small host-side summaries (percentiles,
p-values, corrections) are vectorised NumPy over whole grids.

Comparators (rsatoolbox names, `rsatoolbox.rdm.compare`):
  * "spearman": Pearson r of average ranks (ties share their mean rank).
  * "rho-a":    12 sum((r_x - m)(r_y - m)) / (N^3 - N), rsatoolbox's rho-a (= spearman without ties).
  * "corr":     Pearson r of the dissimilarities.
  * "cosine":   cosine of the (uncentred) dissimilarity vectors.
  tau-a is not offered: it needs concordance counts over pairs of pairs (O(P^2) or an inversion
  count by merge sort), which has no cheap fixed-shape vectorised form.

The stimulus bootstrap, exactly (study.md §8.6, rsatoolbox `eval_bootstrap_pattern`): a resample draws
n stimulus indices with replacement; both RDMs are indexed by it (rows and columns); pairs of positions
(a < b) whose entries are the same original stimulus are dropped; the cross-run criterion is applied to
the original stimuli of each remaining pair; every condition is scored on the same resample.
Implementation without any resampled array: if stimulus k is drawn c_k times, the resampled pair vector
contains every original pair (i < j) exactly c_i c_j times and nothing else (self-pairs i = i are the
dropped ones), and a pair is cross-run in the resample iff it is in the original. So a resampled
statistic is the *weighted* statistic over the original pairs (of the chosen pair set) with integer
weights w = c_i c_j (0 = not drawn). Ranks of the expanded vector are weighted mid-ranks,
    rank(v) = sum_{u < v} w_u + (sum_{u = v} w_u + 1) / 2,
computed per vector with one scatter-add into a histogram over fixed integer order keys, a cumsum and a
gather: O(P) per resample, no sort, shapes fixed. This is exactly equal to scoring the explicitly
resampled RDMs (tested against a NumPy loop and against rsatoolbox's subsample_pattern + compare).

Noise ceilings (Nili et al. 2014; rsatoolbox `boot_noise_ceiling`): lower = mean_s compare(RDM_s,
pool(RDMs_{t != s})), upper = mean_s compare(RDM_s, pool(all RDMs)); pooling as rsatoolbox's `pool_rdm`:
ranks averaged for spearman / rho-a (then re-ranked by the comparator), z-scored vectors averaged for
corr, RMS-normalised vectors averaged for cosine. Values are raw correlations; nothing is divided by
a ceiling.
"""
import functools
import warnings

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from brainalign import rsa

COMPARATORS = ("spearman", "rho-a", "corr", "cosine")
_RANKED = ("spearman", "rho-a")


def _check_method(method: str) -> None:
  if method not in COMPARATORS:
    raise ValueError(f"unknown comparator {method!r}; expected one of {COMPARATORS} (tau-a is not implemented)")


# ----------------------------------------------------------------------------------------------------
# Weighted kernels (weights = multiplicities of the original pairs in a resample; all ones = no resampling)
# ----------------------------------------------------------------------------------------------------

def _order_keys(v: jax.Array) -> jax.Array:
  """[..., P] values -> int32 [..., P] keys in [1, P] with the order and ties of v (average rank // 1)."""
  # 2 x average rank of a tie run [s, s + t) is 2s + 1 + t; halving keeps distinct runs distinct.
  return rsa._doubled_ranks(v) // 2  # pylint: disable=protected-access


def _weighted_ranks(keys: jax.Array, w: jax.Array, nbins: int) -> jax.Array:
  """Mid-ranks of the expanded vector. keys: int [P] in [0, nbins); w: [P] >= 0 -> [P] (any for w = 0)."""
  h = jnp.zeros(nbins, w.dtype).at[keys].add(w)  # total weight per distinct value
  cum = lax.associative_scan(jnp.add, h)  # ~5x faster than jnp.cumsum on the XLA CPU backend
  hk = h[keys]
  return cum[keys] - (hk - 1.0) / 2.0  # below + (tie weight + 1) / 2


def _wcentre(x: jax.Array, w: jax.Array) -> jax.Array:
  """[..., P] minus its weighted mean."""
  return x - jnp.sum(x * w, axis=-1, keepdims=True) / jnp.sum(w)


def _prepare_vectors(v: jax.Array, method: str):
  """Per-vector data the per-resample kernel needs, and which vectors contain NaN.

  v: [..., P] -> (ranked comparators: int32 order keys [..., P] in [1, P] (same order and ties as v);
  others: float32 [..., P] values), bool [...] NaN flags.
  """
  v = jnp.asarray(v, jnp.float32)
  bad = jnp.any(jnp.isnan(v), axis=-1)
  v = jnp.where(jnp.isnan(v), 0.0, v)
  if method in _RANKED:
    return _order_keys(v), bad
  return v, bad


def _scores(data: jax.Array, w: jax.Array, method: str, nbins: int) -> jax.Array:
  """The comparator's per-vector transform under weights w [P] (centred where the comparator centres).

  data: `_prepare_vectors` output [..., P] (ranked comparators: int keys in [0, nbins)) -> float [..., P].
  """
  if method in _RANKED:
    flat = data.reshape(-1, data.shape[-1])
    # one vector at a time: a vmapped scatter-add is ~10x slower on the XLA CPU backend
    r = lax.map(lambda k: _weighted_ranks(k, w, nbins), flat).reshape(data.shape)
    return r - (jnp.sum(w) + 1.0) / 2.0  # mean of ranks 1..W
  if method == "corr":
    return _wcentre(data, w)
  return data


def _similarity(dots: jax.Array, nx: jax.Array, ny: jax.Array, w: jax.Array, method: str) -> jax.Array:
  """dots [..., A, B] = sum w x y of transformed vectors; nx [A], ny [B] = sum w x^2 -> similarity."""
  if method == "rho-a":
    n = jnp.sum(w)
    return dots * 12.0 / (n ** 3 - n)
  return dots / jnp.sqrt(nx[:, None] * ny[None, :])


def _grid(x: jax.Array, y: jax.Array, w: jax.Array, method: str) -> jax.Array:
  """Transformed x [A, P], y [B, P] -> [A, B] similarity under weights w [P]."""
  xw = x * w
  dots = jnp.einsum("ap,bp->ab", xw, y, precision=lax.Precision.HIGHEST)
  nx = jnp.einsum("ap,ap->a", xw, x, precision=lax.Precision.HIGHEST)
  ny = jnp.einsum("bp,bp->b", y * w, y, precision=lax.Precision.HIGHEST)
  return _similarity(dots, nx, ny, w, method)


def _paired(x: jax.Array, y: jax.Array, w: jax.Array, method: str) -> jax.Array:
  """Transformed x, y [..., P] (same leading axes) -> [...] elementwise similarity under weights w."""
  xw = x * w
  dots = jnp.sum(xw * y, axis=-1)
  if method == "rho-a":
    n = jnp.sum(w)
    return dots * 12.0 / (n ** 3 - n)
  return dots / jnp.sqrt(jnp.sum(xw * x, axis=-1) * jnp.sum(y * w * y, axis=-1))


def _ceiling(brain_t: jax.Array, w: jax.Array, method: str, pool_bins: int):
  """Noise ceiling under weights. brain_t: the comparator's transform of the brain vectors [S, R, P].

  Returns (lower [R], upper [R]).
  """
  s_count = brain_t.shape[0]
  if method in _RANKED:
    # pool = mean of the subjects' ranks in this resample; sums of doubled (integer) ranks are exact
    # integer keys, so the comparator's re-ranking of the pool is again a histogram.
    doubled = jnp.round(2.0 * (brain_t + (jnp.sum(w) + 1.0) / 2.0)).astype(jnp.int32)  # [S, R, P]
    total = jnp.sum(doubled, axis=0)  # [R, P]
    pools = jnp.concatenate([total[None] - doubled, total[None]], axis=0)  # [S + 1, R, P]: LOO..., all
    pooled_t = _scores(pools, w, method, pool_bins)
  else:
    # corr: brain_t is centred, so this z-scores (ddof 0); cosine: RMS-normalises (rsatoolbox pool_rdm)
    v = brain_t / jnp.sqrt(jnp.sum(w * brain_t ** 2, axis=-1, keepdims=True) / jnp.sum(w))
    total = jnp.sum(v, axis=0)
    pools = jnp.concatenate([(total[None] - v) / (s_count - 1), total[None] / s_count], axis=0)
    pooled_t = _scores(pools, w, method, pool_bins)
  lower = _paired(brain_t, pooled_t[:s_count], w, method)  # [S, R]
  upper = _paired(brain_t, pooled_t[s_count:], w, method)  # [S, R] (broadcast over subjects)
  return jnp.mean(lower, axis=0), jnp.mean(upper, axis=0)


def _pool_bins(s_count: int, w_max: int) -> int:
  """Histogram size for pooled keys: sums over <= S subjects of doubled ranks <= 2 W + 1 (w = 0 entries)."""
  return s_count * (2 * w_max + 1) + 1


def _evaluate(counts, model_data, model_bad, brain_data, brain_bad, i, j, method, model_chunk, pool_bins):
  """One resample. counts: [n] draws per stimulus -> (rho [V, R, S], lower [R], upper [R])."""
  w = counts[i] * counts[j]  # [P] multiplicity of each original pair; self-pairs never appear
  p = w.shape[0]
  s_count, r_count = brain_bad.shape
  brain_t = _scores(brain_data, w, method, p + 1)  # [S, R, P]
  lower, upper = _ceiling(brain_t, w, method, pool_bins)
  y = brain_t.reshape(s_count * r_count, p)
  v_count = model_bad.shape[0]
  chunks = -(-v_count // model_chunk)
  pad = chunks * model_chunk - v_count

  def blocks(a):  # [V, ...] -> [chunks, model_chunk, ...], padded by repeating row 0
    a = jnp.concatenate([a, jnp.broadcast_to(a[:1], (pad, *a.shape[1:]))]) if pad else a
    return a.reshape(chunks, model_chunk, *a.shape[1:])

  def one_chunk(block):  # model_chunk vectors -> [model_chunk, S * R]
    return _grid(_scores(block, w, method, p + 1), y, w, method)

  sims = lax.map(one_chunk, jax.tree.map(blocks, model_data)).reshape(chunks * model_chunk, s_count, r_count)
  sims = sims[:v_count].transpose(0, 2, 1)  # [V, R, S]
  bad = model_bad[:, None, None] | brain_bad.T[None]
  rho = jnp.where(bad, jnp.nan, sims)
  any_brain_bad = jnp.any(brain_bad, axis=0)  # [R]
  return rho, jnp.where(any_brain_bad, jnp.nan, lower), jnp.where(any_brain_bad, jnp.nan, upper)


@functools.partial(jax.jit, static_argnames=("n", "method", "batch_size", "model_chunk"))
def _bootstrap(model_vectors, brain_vectors, i, j, resamples, *, n, method, batch_size, model_chunk):
  model_data, model_bad = _prepare_vectors(model_vectors, method)
  brain_data, brain_bad = _prepare_vectors(brain_vectors, method)
  s_count = brain_vectors.shape[0]
  pool_bins = _pool_bins(s_count, n * (n - 1) // 2)

  def one(idx):  # [n] stimulus indices of one resample
    counts = jnp.zeros(n, jnp.float32).at[idx].add(1.0)
    return _evaluate(counts, model_data, model_bad, brain_data, brain_bad, i, j, method, model_chunk, pool_bins)

  return lax.map(one, resamples, batch_size=batch_size)


def draw_resamples(key: jax.Array, num_samples: int, n: int) -> jax.Array:
  """Stimulus bootstrap indices, drawn with replacement from an explicit key.

  Args:
    key: a `jax.random.key`.
    num_samples: B.
    n: number of stimuli.
  Returns:
    int32 [B, n] indices into the stimulus list; row b is resample b.
  """
  return jax.random.randint(key, (num_samples, n), 0, n, dtype=jnp.int32)


def identity_resample(n: int) -> jax.Array:
  """int32 [1, n]: the data themselves (every stimulus once); prepend it to get the point estimate."""
  return jnp.arange(n, dtype=jnp.int32)[None]


def bootstrap_rsa(model_vectors: jax.Array, brain_vectors: jax.Array, pairs: tuple[jax.Array, jax.Array],
                  resamples: jax.Array, *, n: int, method: str = "spearman", batch_size: int = 1,
                  model_chunk: int = 32) -> dict:
  """RSA of every model RDM vs every (ROI, subject) and the noise ceiling, on every resample, in one call.

  Args:
    model_vectors: [V, P] model dissimilarities over the pair set (one row per condition, e.g. every
      rule x seed x milestone x layer flattened).
    brain_vectors: [S, R, P] brain dissimilarities over the same pairs.
    pairs: (i, j), int [P] each: the original stimulus indices of each pair (i < j), e.g. all pairs or
      the cross-run subset. Pairs outside the set can never enter a resample's pair set, so giving the
      subset is exact.
    resamples: int [B, n] stimulus indices per resample (`draw_resamples`); `identity_resample(n)` as a
      row gives the plain statistic. The same rows serve every condition, so differences are paired.
    n: number of stimuli.
    method: one of `COMPARATORS`.
    batch_size: resamples evaluated together per `lax.map` step (memory grows linearly with it).
    model_chunk: model vectors transformed together inside one resample (bounds memory at
      ~model_chunk x P x 4 bytes x a few).
  Returns:
    {"rho": [B, V, R, S], "noise_lower": [B, R], "noise_upper": [B, R]} float32; NaN where a vector
    contains NaN (degenerate RDM) or a resample leaves no variance.
  """
  _check_method(method)
  model_vectors = jnp.asarray(model_vectors)
  brain_vectors = jnp.asarray(brain_vectors)
  if model_vectors.ndim != 2 or brain_vectors.ndim != 3:
    raise ValueError(f"expected model_vectors [V, P] and brain_vectors [S, R, P], got {model_vectors.shape} "
                     f"and {brain_vectors.shape}")
  i, j = (jnp.asarray(a, jnp.int32) for a in pairs)
  p = i.shape[0]
  if model_vectors.shape[1] != p or brain_vectors.shape[2] != p or j.shape[0] != p:
    raise ValueError(f"pair counts differ: pairs {p}, model {model_vectors.shape[1]}, brain {brain_vectors.shape[2]}")
  if brain_vectors.shape[0] < 2:
    raise ValueError(f"the noise ceiling needs at least 2 subjects, got {brain_vectors.shape[0]}")
  resamples = jnp.asarray(resamples, jnp.int32)
  if resamples.ndim != 2 or resamples.shape[1] != n:
    raise ValueError(f"resamples must be [B, n={n}], got {resamples.shape}")
  if p >= 2 ** 24 or _pool_bins(brain_vectors.shape[0], n * (n - 1) // 2) >= 2 ** 31:
    raise ValueError(f"n={n} stimuli is too many for exact float32 ranks / int32 pooled keys")
  model_chunk = max(1, min(int(model_chunk), model_vectors.shape[0]))
  rho, lower, upper = _bootstrap(model_vectors, brain_vectors, i, j, resamples, n=int(n), method=method,
                                 batch_size=int(batch_size), model_chunk=model_chunk)
  return {"rho": rho, "noise_lower": lower, "noise_upper": upper}


def compare(x: jax.Array, y: jax.Array, method: str = "spearman") -> jax.Array:
  """rsatoolbox-style comparison of every vector in x with every vector in y.

  Args:
    x: [A, P] dissimilarity vectors. y: [B, P]. NaN entries are not dropped: a vector with a NaN gives NaN.
    method: one of `COMPARATORS`.
  Returns:
    [A, B] similarities (float32).
  """
  _check_method(method)
  x, y = jnp.atleast_2d(jnp.asarray(x, jnp.float32)), jnp.atleast_2d(jnp.asarray(y, jnp.float32))
  return _compare(x, y, method=method)


@functools.partial(jax.jit, static_argnames=("method",))
def _compare(x, y, *, method):
  p = x.shape[-1]
  w = jnp.ones(p, jnp.float32)
  (xd, xb), (yd, yb) = _prepare_vectors(x, method), _prepare_vectors(y, method)
  sim = _grid(_scores(xd, w, method, p + 1), _scores(yd, w, method, p + 1), w, method)
  return jnp.where(xb[:, None] | yb[None, :], jnp.nan, sim)


def noise_ceiling(brain_vectors: jax.Array, method: str = "spearman") -> tuple[jax.Array, jax.Array]:
  """Nili leave-one-subject-out lower bound and upper bound per ROI (rsatoolbox `boot_noise_ceiling`).

  Args:
    brain_vectors: [S, R, P] per subject and ROI, over the pair set in use (S >= 2).
    method: one of `COMPARATORS` (decides the pooling, see the module docstring).
  Returns:
    (lower [R], upper [R]); NaN for an ROI where some subject's vector contains NaN.
  """
  _check_method(method)
  brain_vectors = jnp.asarray(brain_vectors, jnp.float32)
  if brain_vectors.ndim != 3 or brain_vectors.shape[0] < 2:
    raise ValueError(f"expected brain_vectors [S >= 2, R, P], got {brain_vectors.shape}")
  return _noise_ceiling(brain_vectors, method=method)


@functools.partial(jax.jit, static_argnames=("method",))
def _noise_ceiling(brain_vectors, *, method):
  s, _, p = brain_vectors.shape
  w = jnp.ones(p, jnp.float32)
  data, bad = _prepare_vectors(brain_vectors, method)
  lower, upper = _ceiling(_scores(data, w, method, p + 1), w, method, _pool_bins(s, p))
  any_bad = jnp.any(bad, axis=0)
  return jnp.where(any_bad, jnp.nan, lower), jnp.where(any_bad, jnp.nan, upper)


# ----------------------------------------------------------------------------------------------------
# Bootstrap summaries (host side, vectorised over whole grids)
# ----------------------------------------------------------------------------------------------------

def percentile_ci(samples: np.ndarray, ci: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Percentile interval of bootstrap samples (NaN samples ignored).

  Args:
    samples: [B, ...] bootstrap replicates along `axis`.
    ci: coverage, e.g. 0.95 -> 2.5th and 97.5th percentiles (linear interpolation, NumPy's default).
  Returns:
    (lower [...], upper [...]); NaN where every sample is NaN.
  """
  if not 0 < ci < 1:
    raise ValueError(f"ci must be in (0, 1), got {ci}")
  a = 100 * (1 - ci) / 2
  with warnings.catch_warnings():  # an all-NaN slice (a condition that does not exist) gives NaN, as intended
    warnings.simplefilter("ignore", RuntimeWarning)
    lo, hi = np.nanpercentile(np.asarray(samples, np.float64), [a, 100 - a], axis=axis)
  return lo, hi


def bootstrap_p_two_sided(diffs: np.ndarray, axis: int = 0) -> np.ndarray:
  """Two-sided bootstrap p of a difference (study.md §8.6 step 7), capped at 1.

  p = (2 min(#{d_b <= 0}, #{d_b >= 0}) + 1) / (B + 1), B = number of non-NaN replicates.

  Args:
    diffs: [B, ...] per-resample differences d_b.
  Returns:
    [...] p-values.
  """
  d = np.asarray(diffs, np.float64)
  ok = ~np.isnan(d)
  b = ok.sum(axis=axis)
  le = (ok & (d <= 0)).sum(axis=axis)
  ge = (ok & (d >= 0)).sum(axis=axis)
  return np.minimum(1.0, (2 * np.minimum(le, ge) + 1) / (b + 1))


def sign_flip_p(diffs: np.ndarray) -> np.ndarray:
  """Exact one-sided sign-flip permutation p over paired differences (study.md §8.7, P3).

  p = #{s in {-1, +1}^K : mean_k(s_k d_k) >= mean_k(d_k)} / 2^K, all 2^K assignments enumerated
  (the identity included, so p >= 2^-K). A tolerance of 1e-12 x sum|d| absorbs rounding ties.

  Args:
    diffs: [..., K] paired differences (K seeds), K <= 20.
  Returns:
    [...] p-values.
  """
  d = np.asarray(diffs, np.float64)
  k = d.shape[-1]
  if not 1 <= k <= 20:
    raise ValueError(f"sign_flip_p enumerates 2^K assignments; K must be in [1, 20], got {k}")
  signs = 1.0 - 2.0 * ((np.arange(2 ** k)[:, None] >> np.arange(k)[None, :]) & 1)  # [2^K, K]
  null = d @ signs.T / k  # [..., 2^K]
  obs = d.mean(axis=-1, keepdims=True)
  tol = 1e-12 * np.abs(d).sum(axis=-1, keepdims=True)
  p = (null >= obs - tol).mean(axis=-1)
  return np.where(np.isnan(d).any(axis=-1), np.nan, p)


def bh_fdr(p: np.ndarray) -> np.ndarray:
  """Benjamini-Hochberg adjusted p (q-values) over one family (study.md §8.8).

  q_(i) = min_{j >= i} min(1, m p_(j) / j), returned in the input order.

  Args:
    p: [m] p-values of the family (no NaN).
  Returns:
    [m] adjusted p-values.
  """
  p = _family(p)
  m = p.size
  order = np.argsort(p, kind="stable")
  scaled = np.minimum(1.0, m * p[order] / np.arange(1, m + 1))
  q = np.minimum.accumulate(scaled[::-1])[::-1]
  out = np.empty(m)
  out[order] = q
  return out


def holm(p: np.ndarray) -> np.ndarray:
  """Holm step-down adjusted p over one family (study.md §8.8).

  p_adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)), returned in the input order.

  Args:
    p: [m] p-values (no NaN).
  Returns:
    [m] adjusted p-values.
  """
  p = _family(p)
  m = p.size
  order = np.argsort(p, kind="stable")
  scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
  adj = np.maximum.accumulate(scaled)
  out = np.empty(m)
  out[order] = adj
  return out


def _family(p) -> np.ndarray:
  p = np.asarray(p, np.float64)
  if p.ndim != 1:
    raise ValueError(f"a family of p-values must be 1-D, got shape {p.shape}")
  if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
    raise ValueError("p-values must lie in [0, 1] and not be NaN; drop undefined tests from the family first")
  return p


def cohens_d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Cohen's d with the averaged-variance SD (study.md §8.9): (mean_a - mean_b) / sqrt((s_a^2 + s_b^2) / 2).

  Args:
    a: [..., n_a] scores of condition A (seeds or subjects on the last axis); b: [..., n_b]. ddof = 1.
  Returns:
    [...] d (NaN if both SDs are 0 and the means are equal; +-inf if only the SDs are 0).
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape[-1] < 2 or b.shape[-1] < 2:
    raise ValueError("Cohen's d needs at least 2 values per group (sample SD, ddof=1)")
  sd = np.sqrt((a.var(axis=-1, ddof=1) + b.var(axis=-1, ddof=1)) / 2)
  with np.errstate(divide="ignore", invalid="ignore"):
    return (a.mean(axis=-1) - b.mean(axis=-1)) / sd


def cohens_dz(diffs: np.ndarray) -> np.ndarray:
  """Paired Cohen's d_z = mean(d) / sd(d) (ddof = 1) over the last axis [..., K] -> [...]."""
  d = np.asarray(diffs, np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    return d.mean(axis=-1) / d.std(axis=-1, ddof=1)


# ----------------------------------------------------------------------------------------------------
# Partial RSA (study.md §8.10)
# ----------------------------------------------------------------------------------------------------

def _residualise(x: jax.Array, z: jax.Array) -> jax.Array:
  """Centred-rank residual of x on z: x~ - (<x~, z~>/<z~, z~>) z~ ([..., P], z [P])."""
  xc = rsa.centred_ranks(x)
  zc = rsa.centred_ranks(z)
  beta = jnp.einsum("...p,p->...", xc, zc, precision=lax.Precision.HIGHEST)  # <z~, z~> = 1 (unit norm)
  return xc - beta[..., None] * zc


@functools.partial(jax.jit, static_argnames=("form",))
def partial_spearman(model_vectors: jax.Array, brain_vectors: jax.Array, control: jax.Array,
                     form: str = "reference") -> jax.Array:
  """Spearman partial correlation of model and brain RDMs controlling for one nuisance RDM.

  Both are ranked, centred and residualised on the centred ranks of the control by least squares.
  "reference" (the reference implementation's `partial_spearman`): Spearman rho of the residuals
  (re-ranked). "closed": Pearson r of the residuals, = (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2))
  on ranks (the textbook partial Spearman).

  Args:
    model_vectors: [V, P]; brain_vectors: [K, P] (e.g. subjects x ROIs flattened); control: [P]
      (pixel or luminance RDM over the same pairs).
  Returns:
    [V, K] partial correlations; NaN where the control explains a vector's ranks completely
    (residual norm < 1e-4 of the unit-norm centred ranks).
  """
  ex = _residualise(model_vectors, control)
  ey = _residualise(brain_vectors, control)
  # a vector the control explains completely has a zero residual (up to rounding): undefined, not 0
  ex_dead = jnp.linalg.norm(ex, axis=-1) < 1e-4
  ey_dead = jnp.linalg.norm(ey, axis=-1) < 1e-4
  if form == "reference":
    ex, ey = rsa.centred_ranks(ex), rsa.centred_ranks(ey)
  elif form == "closed":
    ex = ex / jnp.linalg.norm(ex, axis=-1, keepdims=True)
    ey = ey / jnp.linalg.norm(ey, axis=-1, keepdims=True)
  else:
    raise ValueError(f"form must be 'reference' or 'closed', got {form!r}")
  out = jnp.einsum("vp,kp->vk", ex, ey, precision=lax.Precision.HIGHEST)
  return jnp.where(ex_dead[:, None] | ey_dead[None, :], jnp.nan, out)


def pixel_rdm_vector(images: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
  """Pixel RDM (study.md §8.10): correlation distance of flattened RGB images in [0, 1].

  Args:
    images: [n, H, W, 3] in [0, 1] (not normalised). pairs: (i, j) [P].
  Returns:
    [P] float32.
  """
  flat = jnp.asarray(np.asarray(images, np.float32).reshape(len(images), -1))
  return np.asarray(rsa.rdm_vectors(flat, pairs, "correlation"))


def luminance_rdm_vector(images: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
  """Luminance RDM (P1 v4): |Y_i - Y_j|, Y = mean Rec.709 luma 0.2126 R + 0.7152 G + 0.0722 B of each image.

  Args:
    images: [n, H, W, 3] in [0, 1]. pairs: (i, j) [P].
  Returns:
    [P] float32.
  """
  x = np.asarray(images, np.float64)
  y = (x @ np.array([0.2126, 0.7152, 0.0722])).reshape(len(x), -1).mean(axis=1)
  i, j = pairs
  return np.abs(y[np.asarray(i)] - y[np.asarray(j)]).astype(np.float32)
