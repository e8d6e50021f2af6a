"""Statistics of the study (study.md §8.5-8.10): comparators, noise ceilings, the stimulus bootstrap, tests.

Everything that touches the [pairs] axis is compiled JAX; the small host-side summaries (percentiles,
p-values, corrections) are vectorised NumPy over whole grids.

Comparators (rsatoolbox names, `rsatoolbox.rdm.compare`):
  * "spearman": Pearson r of average ranks (ties share their mean rank).
  * "rho-a":    12 sum((r_x - m)(r_y - m)) / (N^3 - N), rsatoolbox's rho-a (= spearman without ties).
  * "corr":     Pearson r of the dissimilarities.
  * "cosine":   cosine of the (uncentred) dissimilarity vectors.
  * "tau-a":    (concordant - discordant) / (N (N - 1) / 2) over all pairs of entries, ties counted as
                neither (rsatoolbox's `_tau_a`). Counted without any loop over pairs of pairs: see `tau_a`
                below (O(P log P) per comparison, exact integer counts).

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
gather: O(P) per resample, no sort, shapes fixed. From `PLAN_MIN_RESAMPLES` resamples on, each vector is
sorted once up front (`_rank_plan`) and a resample ranks it with gathers and one prefix sum instead (no
scatter; ~1.25x faster per resample on CPU, identical ranks). This is exactly equal to scoring the explicitly
resampled RDMs (tested against a NumPy loop and against rsatoolbox's subsample_pattern + compare).

Noise ceilings (Nili et al. 2014; rsatoolbox `boot_noise_ceiling`): lower = mean_s compare(RDM_s,
pool(RDMs_{t != s})), upper = mean_s compare(RDM_s, pool(all RDMs)); pooling as rsatoolbox's `pool_rdm`:
ranks averaged for spearman / rho-a / tau-a (then re-ranked by the comparator), z-scored vectors averaged for
corr, RMS-normalised vectors averaged for cosine. Values are raw correlations; nothing is divided by
a ceiling.

Group conventions: `bootstrap_rsa(..., mean_rdm=True)` also scores every model RDM against each ROI's
subject-mean RDM (element-wise mean of the subjects' dissimilarities; P1 v1/v2) on the same resamples.
Partial RSA (`partial_spearman`) has the same stimulus bootstrap in `bootstrap_partial` (weighted ranks,
weighted least-squares residuals, weighted re-ranking).
"""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from brainalign import rsa

COMPARATORS = ("spearman", "rho-a", "corr", "cosine", "tau-a")
_RANKED = ("spearman", "rho-a")
_KEYED = ("spearman", "rho-a", "tau-a")  # comparators that see only the order (and ties) of the values


def _check_method(method: str) -> None:
  if method not in COMPARATORS:
    raise ValueError(f"unknown comparator {method!r}; expected one of {COMPARATORS}")


# ----------------------------------------------------------------------------------------------------
# Weighted kernels (weights = multiplicities of the original pairs in a resample; all ones = no resampling)
# ----------------------------------------------------------------------------------------------------


def _order_keys(v: jax.Array) -> jax.Array:
  """[..., P] values -> int32 [..., P] keys in [1, P] with the order and ties of v (average rank // 1)."""
  # 2 x average rank of a tie run [s, s + t) is 2s + 1 + t; halving keeps distinct runs distinct.
  return rsa._doubled_ranks(v) // 2


def _weighted_ranks(keys: jax.Array, w: jax.Array, nbins: int) -> jax.Array:
  """Mid-ranks of the expanded vector. keys: int [P] in [0, nbins); w: [P] >= 0 -> [P] (any for w = 0)."""
  h = jnp.zeros(nbins, w.dtype).at[keys].add(w)  # total weight per distinct value
  cum = lax.associative_scan(jnp.add, h)  # ~5x faster than jnp.cumsum on the XLA CPU backend
  hk = h[keys]
  return cum[keys] - (hk - 1.0) / 2.0  # below + (tie weight + 1) / 2


def _rank_plan(keys: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-vector precomputation that turns weighted ranking into gathers and one prefix sum (no scatter).

  keys: `_order_keys` output, int [..., P] in [1, P] -> (order, lo, hi), int32 [..., P] each: a sort order
  of the keys, and for every original entry u the sorted positions [lo_u, hi_u) of its tie run. Built once
  per vector; `_planned_ranks` then ranks under any weights. Without ties (the usual case for float RDMs) the
  keys are a permutation of 1..P and the plan is one scatter (~1 ms per 258,840-entry vector on CPU); a
  vector with ties takes a key/value sort (~0.1 s on CPU), chosen per vector by `lax.cond`.
  """
  p = keys.shape[-1]
  pos = jnp.arange(p, dtype=jnp.int32)

  def tie_free(k):
    return jnp.zeros(p, jnp.int32).at[k - 1].set(pos, unique_indices=True), k - 1, k

  def with_ties(k):
    order = jnp.argsort(k).astype(jnp.int32)
    sk = k[order]
    brk = sk[1:] != sk[:-1]
    start = lax.cummax(jnp.where(jnp.concatenate([jnp.ones(1, bool), brk]), pos, 0))  # first position of the run
    stop = lax.cummin(jnp.where(jnp.concatenate([brk, jnp.ones(1, bool)]), pos + 1, p), reverse=True)
    inv = jnp.zeros(p, jnp.int32).at[order].set(pos, unique_indices=True)
    return order, start[inv], stop[inv]

  def one(k):
    k = k.astype(jnp.int32)
    is_permutation = jnp.all(jnp.zeros(p + 1, jnp.int32).at[k].add(1)[1:] == 1)
    return lax.cond(is_permutation, tie_free, with_ties, k)

  flat = keys.reshape(-1, p)
  return tuple(a.reshape(keys.shape) for a in lax.map(one, flat))


def _planned_ranks(plan: tuple[jax.Array, jax.Array, jax.Array], w: jax.Array) -> jax.Array:
  """Weighted mid-ranks of one vector from its `_rank_plan` (order, lo, hi) [P] each and weights w [P] -> [P].

  Equal to `_weighted_ranks`: with C the prefix sums of w in sorted order (C_0 = 0), an entry whose tie run
  occupies sorted positions [lo, hi) has weight C_lo below it and C_hi - C_lo tied with it, so its mid-rank
  is C_lo + (C_hi - C_lo + 1) / 2 = (C_lo + C_hi + 1) / 2. About 1.3x faster than the histogram on the
  XLA CPU backend (its scatter-add is slow); used where the same vectors are ranked under many weights.
  """
  order, lo, hi = plan
  c = lax.associative_scan(jnp.add, w[order])
  c = jnp.concatenate([jnp.zeros(1, c.dtype), c])
  return (c[lo] + c[hi] + 1.0) / 2.0


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
  if method in _KEYED:
    return _order_keys(v), bad
  return v, bad


def _scores(data: jax.Array, w: jax.Array, method: str, nbins: int) -> jax.Array:
  """The comparator's per-vector transform under weights w [P] (centred where the comparator centres).

  data: `_prepare_vectors` output [..., P] (ranked comparators: int keys in [0, nbins), or their
  `_rank_plan`) -> float [..., P].
  """
  if method in _RANKED:
    # one vector at a time: a vmapped scatter-add is ~10x slower on the XLA CPU backend
    if isinstance(data, tuple):  # rank plans
      shape = data[0].shape
      rank_one = lambda plan: _planned_ranks(plan, w)
    else:
      shape = data.shape
      rank_one = lambda k: _weighted_ranks(k, w, nbins)
    flat = jax.tree.map(lambda a: a.reshape(-1, shape[-1]), data)
    r = lax.map(rank_one, flat).reshape(shape)
    return r - (jnp.sum(w) + 1.0) / 2.0  # mean of ranks 1..W
  if method == "corr":
    return _wcentre(data, w)
  return data


def _similarity(dots: jax.Array, nx: jax.Array, ny: jax.Array, w: jax.Array, method: str) -> jax.Array:
  """dots [..., A, B] = sum w x y of transformed vectors; nx [A], ny [B] = sum w x^2 -> similarity."""
  if method == "rho-a":
    n = jnp.sum(w)
    return dots * 12.0 / (n**3 - n)
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
    return dots * 12.0 / (n**3 - n)
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
    v = brain_t / jnp.sqrt(jnp.sum(w * brain_t**2, axis=-1, keepdims=True) / jnp.sum(w))
    total = jnp.sum(v, axis=0)
    pools = jnp.concatenate([(total[None] - v) / (s_count - 1), total[None] / s_count], axis=0)
    pooled_t = _scores(pools, w, method, pool_bins)
  lower = _paired(brain_t, pooled_t[:s_count], w, method)  # [S, R]
  upper = _paired(brain_t, pooled_t[s_count:], w, method)  # [S, R] (broadcast over subjects)
  return jnp.mean(lower, axis=0), jnp.mean(upper, axis=0)


# ----------------------------------------------------------------------------------------------------
# Kendall's tau-a without a loop over pairs of pairs
# ----------------------------------------------------------------------------------------------------
#
# For weighted entries (x_u, y_u, w_u) (a resample's expanded vector holds w_u copies of entry u),
#   N = sum w, tot = N (N - 1) / 2, T_x / T_y / T_xy = pairs of copies tied in x / y / both,
#   D = sum_{u, v: x_u < x_v, y_u > y_v} w_u w_v (discordant; copies of one entry are tied in both),
#   tau-a = (C - D) / tot with C = tot - D - T_x - T_y + T_xy   (rsatoolbox `_tau_a`, scipy's counts).
# D is an inversion count: order the entries by x (ties in any order) and count, for every entry, the
# earlier entries with a larger y and a different x. It is computed with a wavelet-matrix pass over the
# bits of the integer y keys (most significant first): at each bit, inside each group of entries that
# share the higher bits (contiguous, in x order), every entry with bit 0 is inverted with the earlier
# entries with bit 1 and a smaller x; then the group is stably partitioned by the bit (positions from
# prefix sums, one scatter). log2(P) levels of O(P) scans, gathers and one scatter: O(P log P), fixed
# shapes, no sort after the once-per-vector ordering of x. Counts reach P^2 / 2 ~ 3.3e10 at P = 258,840,
# beyond int32 (and x64 is off in JAX by default), so every total is an exact int32 (hi, lo) pair with
# value hi * 2^16 + lo; only the final numerator and denominator are rounded (to float32, relative
# error ~6e-8 each).
#
# Cost (measured 2026-11-27, 2-core AMD EPYC VM shared with other jobs, load 2.8-3.4, jax 0.10.2 CPU): one
# comparison of two 258,840-entry vectors takes 0.27-0.33 s warm (compile ~8 s), 0.19 s each inside a 4 x 3
# grid; rsatoolbox's `_tau_a` (SciPy's Cython merge sort, float64) takes 0.076 s on the same machine. The
# full paper grid (160 model RDMs x 18 subject-ROI RDMs + 36 ceiling comparisons) is therefore ~10-15 min
# per resample on this CPU: a 1,000-resample tau-a bootstrap of it is impractical here (use spearman, or an
# accelerator). tau-a stays an option for small grids (the :tiny report with tau-a: 4.5 min, load ~4).

_LIMB = 16


def _exact_sum(c: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Exact sum of non-negative int32 counts c [...] (each < 2^31, total < 2^46).

  Returns int32 (hi, lo) with sum = hi 2^16 + lo, 0 <= lo < 2^16.
  """
  c = c.reshape(-1)
  chunk = 1 << 14  # 2^14 low limbs (< 2^16 each) sum to < 2^30: no overflow
  pad = -c.shape[0] % chunk
  if pad:
    c = jnp.concatenate([c, jnp.zeros(pad, c.dtype)])
  s = jnp.sum((c & 0xFFFF).reshape(-1, chunk), axis=1)
  hi = jnp.sum(c >> _LIMB) + jnp.sum(s >> _LIMB)  # <= total / 2^16: no overflow
  lo = jnp.sum(s & 0xFFFF)
  return hi + (lo >> _LIMB), lo & 0xFFFF


def _scan_add(a: jax.Array) -> jax.Array:
  """Inclusive prefix sum along the last axis (associative_scan: ~3x faster than jnp.cumsum on XLA CPU)."""
  return lax.associative_scan(jnp.add, a, axis=a.ndim - 1)


def _run_starts(*keys: jax.Array) -> jax.Array:
  """bool [P]: True where any of the keys [P] differs from the previous entry (and at 0)."""
  out = jnp.zeros(keys[0].shape, bool).at[0].set(True)
  for k in keys:
    out = out | jnp.concatenate([jnp.ones(1, bool), k[1:] != k[:-1]])
  return out


def _tied_pairs(start: jax.Array, w: jax.Array) -> jax.Array:
  """Per entry, the pairs of copies it closes inside its run: w_u (weight of earlier run members) + C(w_u, 2).

  start: bool [P] run starts (runs contiguous); w: int32 [P] >= 0 -> int32 [P]; the sum is sum_runs C(W_run, 2).
  """
  before = _scan_add(w) - w
  base = lax.associative_scan(jnp.maximum, jnp.where(start, before, 0))  # `before` is non-decreasing
  return w * (before - base) + (w * (w - 1)) // 2


def _tau_order(keys: jax.Array) -> tuple[jax.Array, jax.Array]:
  """int keys [..., P] -> (keys in ascending order, int32 positions that sort them) [..., P] (once per vector)."""
  iota = jnp.broadcast_to(jnp.arange(keys.shape[-1], dtype=jnp.int32), keys.shape)
  return lax.sort((keys, iota), dimension=keys.ndim - 1, num_keys=1)


def _tau_a_kernel(xs: jax.Array, perm: jax.Array, yk: jax.Array, w: jax.Array, bits: int) -> jax.Array:
  """Weighted tau-a of one pair of vectors.

  xs: int32 [P] x keys in ascending order; perm: int32 [P] their positions (`_tau_order`); yk: int32 [P]
  y keys in [0, 2^bits) (same order and ties as y); w: int32 [P] >= 0 multiplicities. -> float32 scalar
  (NaN if fewer than 2 copies).
  """
  p = xs.shape[0]
  x, y, w = xs, yk[perm], w[perm]
  below = _scan_add(jnp.zeros((1 << bits) + 1, jnp.int32).at[y + 1].add(1))  # below[t] = #{y < t}
  idx = jnp.arange(p, dtype=jnp.int32)

  def level(k, carry):
    x, y, w, d_hi, d_lo = carry
    shift = bits - 1 - k
    bit = (y >> shift) & 1
    pre = y >> (shift + 1)
    gstart = below[pre << (shift + 1)]  # position of the first entry of this entry's group
    ones = w * bit
    ones_before = _scan_add(ones) - ones
    # run of equal x inside the group: it starts at the later of the group start and the x-run start
    xstart = jnp.maximum(gstart, lax.associative_scan(jnp.maximum, jnp.where(_run_starts(x), idx, 0)))
    hi, lo = _exact_sum(w * (1 - bit) * (ones_before[xstart] - ones_before[gstart]))
    zero = 1 - bit
    zeros_before = _scan_add(zero) - zero
    zin = zeros_before - zeros_before[gstart]  # group members before this one with bit 0
    pos = jnp.where(bit == 0, gstart + zin, below[(2 * pre + 1) << shift] + (idx - gstart - zin))
    put = lambda a: jnp.zeros_like(a).at[pos].set(a, unique_indices=True)
    return put(x), put(y), put(w), d_hi + hi, d_lo + lo

  zero32 = jnp.int32(0)
  x_seq, w_seq = x, w
  x, y, w, d_hi, d_lo = lax.fori_loop(0, bits, level, (x, y, w, zero32, zero32))
  # now ordered by y (stably, so equal (x, y) entries are adjacent)
  counts = (
    _tied_pairs(jnp.zeros(p, bool).at[0].set(True), w_seq),
    _tied_pairs(_run_starts(x_seq), w_seq),
    _tied_pairs(_run_starts(y), w),
    _tied_pairs(_run_starts(y, x), w),
  )
  (t_hi, t_lo), (x_hi, x_lo), (y_hi, y_lo), (b_hi, b_lo) = (_exact_sum(c) for c in counts)
  num_hi = t_hi - x_hi - y_hi + b_hi - 2 * d_hi
  num_lo = t_lo - x_lo - y_lo + b_lo - 2 * d_lo
  num = num_hi.astype(jnp.float32) * float(1 << _LIMB) + num_lo.astype(jnp.float32)
  den = t_hi.astype(jnp.float32) * float(1 << _LIMB) + t_lo.astype(jnp.float32)
  return jnp.clip(num / den, -1.0, 1.0)  # 0 / 0 = NaN for N < 2


def _key_bits(p: int) -> int:
  """Bits of the order keys of a [P] vector (`_order_keys` gives keys in [1, P])."""
  return max(1, int(p).bit_length())


def _tau_grid(x_sorted, x_perm, y_keys, w, bits):
  """x_sorted, x_perm [A, P], y_keys [B, P], w [P] -> [A, B] tau-a, one pair of vectors at a time."""
  a_count, b_count = x_sorted.shape[0], y_keys.shape[0]
  ai, bi = (g.ravel() for g in jnp.meshgrid(jnp.arange(a_count), jnp.arange(b_count), indexing="ij"))
  w = w.astype(jnp.int32)
  out = lax.map(
    lambda ab: _tau_a_kernel(x_sorted[ab[0]], x_perm[ab[0]], y_keys[ab[1]], w, bits),
    (ai, bi),
    batch_size=rsa._loop_batch(a_count * b_count),
  )
  return out.reshape(a_count, b_count)


def _tau_paired(x_sorted, x_perm, y_keys, w, bits):
  """[K, P] each (row k of x with row k of y), w [P] -> [K] tau-a."""
  w = w.astype(jnp.int32)
  return lax.map(
    lambda k: _tau_a_kernel(x_sorted[k], x_perm[k], y_keys[k], w, bits),
    jnp.arange(x_sorted.shape[0]),
    batch_size=rsa._loop_batch(x_sorted.shape[0]),
  )


def tau_a(x: jax.Array, y: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """Kendall's tau-a of every vector in x with every vector in y (rsatoolbox `compare(..., 'tau-a')`).

  O(P log P) per comparison with exact integer pair counts (see the section comment above); a pair of
  258,840-entry vectors takes 0.2-0.3 s on the 2-core development CPU (rsatoolbox: 0.08 s), so the full
  paper grid is ~10-15 min per resample there.

  Args:
    x: [A, P] values. y: [B, P] values (float or int; only order and ties matter).
    weights: optional int [P] >= 0 multiplicities (entry u counted w_u times, its copies tied with each
      other), e.g. a stimulus resample's pair weights; default all ones.
  Returns:
    float32 [A, B]; NaN where a vector contains NaN.
  """
  x, y = jnp.atleast_2d(jnp.asarray(x)), jnp.atleast_2d(jnp.asarray(y))
  p = x.shape[-1]
  w = jnp.ones(p, jnp.int32) if weights is None else jnp.asarray(weights, jnp.int32)
  if y.shape[-1] != p or w.shape != (p,):
    raise ValueError(f"lengths differ: x {x.shape}, y {y.shape}, weights {w.shape}")
  return _tau_a_jit(x, y, w)


@jax.jit
def _tau_a_jit(x, y, w):
  (xk, xb), (yk, yb) = _prepare_vectors(x, "tau-a"), _prepare_vectors(y, "tau-a")
  xs, xp = _tau_order(xk)
  out = _tau_grid(xs, xp, yk, w, _key_bits(x.shape[-1]))
  return jnp.where(xb[:, None] | yb[None, :], jnp.nan, out)


def _pooled_rank_keys(brain_keys: jax.Array, w: jax.Array) -> jax.Array:
  """Rank pooling under weights (rsatoolbox pools tau-a by averaged ranks too).

  brain_keys: int [S, R, P] order keys -> int32 [S + 1, R, P] order keys (in [1, P]) of the pools: rows
  0..S-1 = mean of the other subjects' weighted ranks (leave-one-out), row S = mean of all.
  """
  p = brain_keys.shape[-1]
  ranks = _scores(brain_keys, w, "spearman", p + 1) + (jnp.sum(w) + 1.0) / 2.0  # weighted mid-ranks
  doubled = jnp.round(2.0 * ranks).astype(jnp.int32)  # exact integers; sums keep the pools' order and ties
  total = jnp.sum(doubled, axis=0)
  return _order_keys(jnp.concatenate([total[None] - doubled, total[None]], axis=0))


def _ceiling_tau(brain_keys: jax.Array, brain_sorted: jax.Array, brain_perm: jax.Array, w: jax.Array):
  """Noise ceiling for tau-a under weights w [P].

  brain_keys, brain_sorted, brain_perm: [S, R, P] (order keys; `_tau_order` of them) -> (lower [R], upper [R]).
  """
  s_count, r_count, p = brain_keys.shape
  pools = _pooled_rank_keys(brain_keys, w)
  xs, xp = brain_sorted.reshape(-1, p), brain_perm.reshape(-1, p)
  bits = _key_bits(p)
  lower = _tau_paired(xs, xp, pools[:s_count].reshape(-1, p), w, bits).reshape(s_count, r_count)
  upper = _tau_paired(xs, xp, jnp.broadcast_to(pools[s_count], brain_keys.shape).reshape(-1, p), w, bits).reshape(
    s_count, r_count
  )
  return jnp.mean(lower, axis=0), jnp.mean(upper, axis=0)


def _pool_bins(s_count: int, w_max: int) -> int:
  """Histogram size for pooled keys: sums over <= S subjects of doubled ranks <= 2 W + 1 (w = 0 entries)."""
  return s_count * (2 * w_max + 1) + 1


def _evaluate(counts, model_data, model_bad, brain_data, brain_bad, i, j, method, model_chunk, pool_bins, s_count):
  """One resample. counts: [n] draws per stimulus -> (rho [V, R, S'], lower [R], upper [R]).

  The brain axis S' holds the s_count subjects (the ceiling uses only these), then optionally the
  subject-mean RDM.
  """
  w = counts[i] * counts[j]  # [P] multiplicity of each original pair; self-pairs never appear
  p = w.shape[0]
  s_cmp, r_count = brain_bad.shape
  no_ceiling = jnp.full((r_count,), jnp.nan, jnp.float32)
  if method == "tau-a":  # model_data = (sorted keys, order) [V, P] each; brain_data = (keys, sorted, order)
    brain_keys, brain_sorted, brain_perm = brain_data
    lower, upper = (
      _ceiling_tau(brain_keys[:s_count], brain_sorted[:s_count], brain_perm[:s_count], w)
      if s_count > 1
      else (no_ceiling, no_ceiling)
    )
    sims = _tau_grid(*model_data, brain_keys.reshape(s_cmp * r_count, p), w, _key_bits(p))
    sims = sims.reshape(-1, s_cmp, r_count).transpose(0, 2, 1)  # [V, R, S']
    return _finish(sims, lower, upper, model_bad, brain_bad, s_count)
  brain_t = _scores(brain_data, w, method, p + 1)  # [S', R, P]
  lower, upper = _ceiling(brain_t[:s_count], w, method, pool_bins) if s_count > 1 else (no_ceiling, no_ceiling)
  y = brain_t.reshape(s_cmp * r_count, p)
  v_count = model_bad.shape[0]
  chunks = -(-v_count // model_chunk)
  pad = chunks * model_chunk - v_count

  def blocks(a):  # [V, ...] -> [chunks, model_chunk, ...], padded by repeating row 0
    a = jnp.concatenate([a, jnp.broadcast_to(a[:1], (pad, *a.shape[1:]))]) if pad else a
    return a.reshape(chunks, model_chunk, *a.shape[1:])

  def one_chunk(block):  # model_chunk vectors -> [model_chunk, S * R]
    return _grid(_scores(block, w, method, p + 1), y, w, method)

  sims = lax.map(one_chunk, jax.tree.map(blocks, model_data)).reshape(chunks * model_chunk, s_cmp, r_count)
  sims = sims[:v_count].transpose(0, 2, 1)  # [V, R, S']
  return _finish(sims, lower, upper, model_bad, brain_bad, s_count)


def _finish(sims, lower, upper, model_bad, brain_bad, s_count):
  """NaN where an input vector had NaN: sims [V, R, S'], lower/upper [R], model_bad [V], brain_bad [S', R]."""
  bad = model_bad[:, None, None] | brain_bad.T[None]
  rho = jnp.where(bad, jnp.nan, sims)
  any_brain_bad = jnp.any(brain_bad[:s_count], axis=0)  # [R]
  return rho, jnp.where(any_brain_bad, jnp.nan, lower), jnp.where(any_brain_bad, jnp.nan, upper)


# Ranking strategy of the ranked comparators: a `_rank_plan` costs one key/value sort per vector (~0.1 s per
# 258,840-entry vector on CPU) and saves ~20 % of every resample; it pays off from about 50 resamples.
PLAN_MIN_RESAMPLES = 64


def _bootstrap_impl(
  model_vectors, brain_vectors, i, j, resamples, *, n, method, batch_size, model_chunk, mean_rdm, rank_plan
):
  s_count = brain_vectors.shape[0]
  if mean_rdm:  # the subject-mean RDM (element-wise mean of the raw dissimilarities) as one more "subject"
    brain_vectors = jnp.concatenate([brain_vectors, jnp.mean(brain_vectors, axis=0, keepdims=True)])
  model_data, model_bad = _prepare_vectors(model_vectors, method)
  brain_data, brain_bad = _prepare_vectors(brain_vectors, method)
  if method == "tau-a":  # order x (the model) once per vector; the brain keys serve as y and, sorted, as x
    model_data = _tau_order(model_data)
    brain_data = (brain_data, *_tau_order(brain_data))
  elif method in _RANKED and rank_plan:  # sort every vector once; each resample ranks by gathers + a prefix sum
    model_data, brain_data = _rank_plan(model_data), _rank_plan(brain_data)
  pool_bins = _pool_bins(s_count, n * (n - 1) // 2)

  def one(idx):  # [n] stimulus indices of one resample
    counts = jnp.zeros(n, jnp.float32).at[idx].add(1.0)
    return _evaluate(
      counts, model_data, model_bad, brain_data, brain_bad, i, j, method, model_chunk, pool_bins, s_count
    )

  return lax.map(one, resamples, batch_size=batch_size)


_bootstrap = jax.jit(
  _bootstrap_impl, static_argnames=("n", "method", "batch_size", "model_chunk", "mean_rdm", "rank_plan")
)


@functools.lru_cache(maxsize=16)
def _over_resamples(impl, mesh, n_args: int, **static):
  """`impl` compiled with its last argument (the resamples [B, n]) split over `mesh`'s one axis and every other
  argument replicated (`jax.shard_map`): each device evaluates its own resamples."""
  from jax.sharding import PartitionSpec as P

  axis = mesh.axis_names[0]
  body = functools.partial(impl, **static)
  specs = (P(),) * (n_args - 1) + (P(axis),)
  return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=specs, out_specs=P(axis)))


def _split_resamples(run, resamples: jax.Array, mesh, *args):
  """Runs run(*args, resamples) with the resamples split over `mesh` (padded with copies of row 0 to a multiple
  of the device count, the padding dropped): the same rows, so the results equal one device's."""
  b, size = resamples.shape[0], int(mesh.devices.size)
  pad = -b % size
  if pad:
    resamples = jnp.concatenate([resamples, jnp.broadcast_to(resamples[:1], (pad, resamples.shape[1]))])
  return jax.tree.map(lambda a: a[:b], run(*args, resamples))


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


def bootstrap_rsa(
  model_vectors: jax.Array,
  brain_vectors: jax.Array,
  pairs: tuple[jax.Array, jax.Array],
  resamples: jax.Array,
  *,
  n: int,
  method: str = "spearman",
  batch_size: int = 1,
  model_chunk: int = 32,
  mean_rdm: bool = False,
  rank_plan: bool | None = None,
  mesh=None,
) -> dict:
  """RSA of every model RDM vs every (ROI, subject) and the noise ceiling, on every resample, in one call.

  Args:
    model_vectors: [V, P] model dissimilarities over the pair set (one row per condition, e.g. every
      rule x seed x milestone x layer flattened).
    brain_vectors: [S, R, P] brain dissimilarities over the same pairs (S >= 1).
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
    mean_rdm: also compare every model RDM with the subject-mean RDM of each ROI (the element-wise mean
      of the S subjects' dissimilarities, the P1 v1/v2 group convention, study.md §7.7), on the same
      resamples.
    rank_plan: spearman / rho-a only: rank through a per-vector sort plan (`_rank_plan`; faster per
      resample, one sort per vector up front) instead of a histogram per resample; None = when there are at
      least `PLAN_MIN_RESAMPLES` resamples. Both give identical ranks.
    mesh: a one-axis `jax.sharding.Mesh` (brainalign.devices.resample_mesh) to split the resamples over its
      devices, or None; the rows and so the results are the same whatever the device count.
  Returns:
    {"rho": [B, V, R, S], "noise_lower": [B, R], "noise_upper": [B, R]} float32, plus "rho_mean_rdm"
    [B, V, R] if mean_rdm; NaN where a vector contains NaN (degenerate RDM) or a resample leaves no variance.
    With a single brain RDM per ROI (S = 1) there is no noise ceiling: "noise_lower"/"noise_upper" are NaN.
  """
  _check_method(method)
  model_vectors = jnp.asarray(model_vectors)
  brain_vectors = jnp.asarray(brain_vectors)
  if model_vectors.ndim != 2 or brain_vectors.ndim != 3:
    raise ValueError(
      f"expected model_vectors [V, P] and brain_vectors [S, R, P], got {model_vectors.shape} and {brain_vectors.shape}"
    )
  i, j = (jnp.asarray(a, jnp.int32) for a in pairs)
  p = i.shape[0]
  if model_vectors.shape[1] != p or brain_vectors.shape[2] != p or j.shape[0] != p:
    raise ValueError(f"pair counts differ: pairs {p}, model {model_vectors.shape[1]}, brain {brain_vectors.shape[2]}")
  resamples = jnp.asarray(resamples, jnp.int32)
  if resamples.ndim != 2 or resamples.shape[1] != n:
    raise ValueError(f"resamples must be [B, n={n}], got {resamples.shape}")
  if p >= 2**24 or _pool_bins(brain_vectors.shape[0], n * (n - 1) // 2) >= 2**31:
    raise ValueError(f"n={n} stimuli is too many for exact float32 ranks / int32 pooled keys")
  model_chunk = max(1, min(int(model_chunk), model_vectors.shape[0]))
  static = dict(
    n=int(n),
    method=method,
    batch_size=int(batch_size),
    model_chunk=model_chunk,
    mean_rdm=bool(mean_rdm),
    rank_plan=bool(resamples.shape[0] >= PLAN_MIN_RESAMPLES if rank_plan is None else rank_plan),
  )
  if mesh is not None and mesh.devices.size > 1:
    run = _over_resamples(_bootstrap_impl, mesh, 5, **static)
    rho, lower, upper = _split_resamples(run, resamples, mesh, model_vectors, brain_vectors, i, j)
  else:
    rho, lower, upper = _bootstrap(model_vectors, brain_vectors, i, j, resamples, **static)
  s_count = brain_vectors.shape[0]
  out = {"rho": rho[..., :s_count], "noise_lower": lower, "noise_upper": upper}
  if mean_rdm:
    out["rho_mean_rdm"] = rho[..., s_count]
  return out


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
  if method == "tau-a":
    return _tau_a_jit(x, y, jnp.ones(p, jnp.int32))
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
  if method == "tau-a":
    lower, upper = _ceiling_tau(data, *_tau_order(data), w)
  else:
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
  signs = 1.0 - 2.0 * ((np.arange(2**k)[:, None] >> np.arange(k)[None, :]) & 1)  # [2^K, K]
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
def partial_spearman(
  model_vectors: jax.Array, brain_vectors: jax.Array, control: jax.Array, form: str = "reference"
) -> jax.Array:
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


PARTIAL_FORMS = ("reference", "closed")


def _wsum(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
  """sum_p w a b over the last axis: [..., P] x [..., P] (broadcast) -> [...]."""
  return jnp.sum(a * b * w, axis=-1)


def _partial_one(rx, ry, rz, w, forms):
  """Partial Spearman of every x with every y given one control z, under pair weights w [P].

  rx [V, P], ry [K, P], rz [P]: weighted mid-ranks minus their weighted mean (`_scores`), computed once per
  resample and shared by every control. Returns {form: [V, K]}.
  """
  p = w.shape[0]
  ranks = lambda k: _scores(k, w, "spearman", p + 1)  # weighted mid-ranks minus their weighted mean
  zz = _wsum(rz, rz, w)

  def residual(r):
    e = r - (_wsum(r, rz, w) / zz)[:, None] * rz  # weighted least squares on the centred control ranks
    dead = _wsum(e, e, w) < 1e-8 * _wsum(r, r, w)  # the control explains the ranks completely: undefined
    return e, dead

  ex, x_dead = residual(rx)
  ey, y_dead = residual(ry)
  dead = x_dead[:, None] | y_dead[None, :]
  out = {}
  for form in forms:
    if form == "reference":  # Spearman of the residuals: re-rank them (weighted), then correlate
      a, b = ranks(_order_keys(ex)), ranks(_order_keys(ey))
    else:  # "closed": Pearson of the residuals (weighted means are already 0)
      a, b = ex, ey
    sim = _grid(a, b, w, "corr")
    out[form] = jnp.where(dead, jnp.nan, sim)
  return out


def _bootstrap_partial_impl(model_vectors, brain_vectors, controls, i, j, resamples, *, forms, batch_size):
  n = resamples.shape[1]
  p = i.shape[0]
  x_keys, x_bad = _prepare_vectors(model_vectors, "spearman")
  y_keys, y_bad = _prepare_vectors(brain_vectors, "spearman")
  z_keys, z_bad = _prepare_vectors(controls, "spearman")

  def one(idx):  # [n] stimulus indices of one resample -> {form: [C, V, K]}
    counts = jnp.zeros(n, jnp.float32).at[idx].add(1.0)
    w = counts[i] * counts[j]
    rx, ry, rz = (_scores(k, w, "spearman", p + 1) for k in (x_keys, y_keys, z_keys))
    return lax.map(lambda z: _partial_one(rx, ry, z, w, forms), rz)

  out = lax.map(one, resamples, batch_size=batch_size)
  bad = z_bad[:, None, None] | x_bad[None, :, None] | y_bad[None, None, :]
  return {f: jnp.where(bad[None], jnp.nan, v) for f, v in out.items()}


def bootstrap_partial(
  model_vectors: jax.Array,
  brain_vectors: jax.Array,
  controls: jax.Array,
  pairs: tuple[jax.Array, jax.Array],
  resamples: jax.Array,
  *,
  n: int,
  forms: tuple[str, ...] = PARTIAL_FORMS,
  batch_size: int = 1,
  mesh=None,
) -> dict:
  """Partial Spearman RSA (`partial_spearman`) on every stimulus resample, in one compiled call.

  The same machinery as `bootstrap_rsa`: a resample is the integer pair weights w = c_i c_j (c = draws
  per stimulus), which equals indexing the RDMs by the resample and dropping duplicated stimuli's
  self-pairs; ranks are weighted mid-ranks, centring and the least-squares residualisation are weighted,
  and the "reference" form re-ranks the residuals under the same weights. Pass the same `resamples` as
  to `bootstrap_rsa` to pair partial and plain RSA; `identity_resample(n)` as a row gives the plain
  `partial_spearman`. Cost per resample: the "reference" form sorts every residual vector (V + K per
  control); "closed" needs no sort.

  Args:
    model_vectors: [V, P]; brain_vectors: [K, P] (e.g. subjects x ROIs flattened); controls: [C, P]
      nuisance RDMs (pixel, luminance) over the same pairs.
    pairs: (i, j) int [P] original stimulus indices of each pair (the pair set in use).
    resamples: int [B, n] stimulus indices (`draw_resamples`).
    n: number of stimuli. forms: subset of ("reference", "closed"). batch_size: resamples per lax.map step.
    mesh: a one-axis `jax.sharding.Mesh` (brainalign.devices.resample_mesh) to split the resamples over its
      devices, or None; the rows and so the results are the same whatever the device count.
  Returns:
    {form: float32 [B, C, V, K]}; NaN where a vector has NaN or the control explains it completely.
  """
  forms = tuple(forms)
  if not forms or any(f not in PARTIAL_FORMS for f in forms):
    raise ValueError(f"forms must be a non-empty subset of {PARTIAL_FORMS}, got {forms}")
  model_vectors = jnp.atleast_2d(jnp.asarray(model_vectors, jnp.float32))
  brain_vectors = jnp.atleast_2d(jnp.asarray(brain_vectors, jnp.float32))
  controls = jnp.atleast_2d(jnp.asarray(controls, jnp.float32))
  i, j = (jnp.asarray(a, jnp.int32) for a in pairs)
  p = i.shape[0]
  if model_vectors.shape[1] != p or brain_vectors.shape[1] != p or controls.shape[1] != p:
    raise ValueError(
      f"pair counts differ: pairs {p}, model {model_vectors.shape}, brain {brain_vectors.shape}, "
      f"controls {controls.shape}"
    )
  resamples = jnp.asarray(resamples, jnp.int32)
  if resamples.ndim != 2 or resamples.shape[1] != n:
    raise ValueError(f"resamples must be [B, n={n}], got {resamples.shape}")
  if mesh is not None and mesh.devices.size > 1:
    run = _over_resamples(_bootstrap_partial_impl, mesh, 6, forms=forms, batch_size=int(batch_size))
    return _split_resamples(run, resamples, mesh, model_vectors, brain_vectors, controls, i, j)
  return _bootstrap_partial(
    model_vectors, brain_vectors, controls, i, j, resamples, forms=forms, batch_size=int(batch_size)
  )


_bootstrap_partial = jax.jit(_bootstrap_partial_impl, static_argnames=("forms", "batch_size"))


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
