"""Kendall's tau-a without a loop over pairs of pairs (exact integer counts, O(P log P) per comparison) and its
noise ceiling under resample weights. See brainalign.stats."""

import jax
import jax.numpy as jnp
from jax import lax

from brainalign.ranks import loop_batch, order_keys
from brainalign.stats.kernels import _prepare_vectors, _scores

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
  """Bits of the order keys of a [P] vector (`order_keys` gives keys in [1, P])."""
  return max(1, int(p).bit_length())


def _tau_grid(x_sorted, x_perm, y_keys, w, bits):
  """x_sorted, x_perm [A, P], y_keys [B, P], w [P] -> [A, B] tau-a, one pair of vectors at a time."""
  a_count, b_count = x_sorted.shape[0], y_keys.shape[0]
  ai, bi = (g.ravel() for g in jnp.meshgrid(jnp.arange(a_count), jnp.arange(b_count), indexing="ij"))
  w = w.astype(jnp.int32)
  out = lax.map(
    lambda ab: _tau_a_kernel(x_sorted[ab[0]], x_perm[ab[0]], y_keys[ab[1]], w, bits),
    (ai, bi),
    batch_size=loop_batch(a_count * b_count),
  )
  return out.reshape(a_count, b_count)


def _tau_paired(x_sorted, x_perm, y_keys, w, bits):
  """[K, P] each (row k of x with row k of y), w [P] -> [K] tau-a."""
  w = w.astype(jnp.int32)
  return lax.map(
    lambda k: _tau_a_kernel(x_sorted[k], x_perm[k], y_keys[k], w, bits),
    jnp.arange(x_sorted.shape[0]),
    batch_size=loop_batch(x_sorted.shape[0]),
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
  return order_keys(jnp.concatenate([total[None] - doubled, total[None]], axis=0))


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
