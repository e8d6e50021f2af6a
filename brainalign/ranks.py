"""Ranking, shared by RSA (brainalign.rsa) and the statistics (brainalign.stats): exact average ranks of float
vectors, and the weighted mid-ranks of a stimulus resample, all jit-able with fixed shapes.

Ranking sorts integer keys (one operand) and binary-searches each value's first position, one vector at a time,
instead of calling `jax.scipy.stats.rankdata`. Both are exact with ties, but on the XLA CPU backend `rankdata`'s
key/value sort goes through a per-comparison callback while a plain int32 sort takes the fast path (~10 ms per
258,840-vector): for 160 such vectors `rankdata` takes ~13 s of CPU and `average_ranks` ~3.5 s (2-core AMD EPYC,
jax 0.10.2).

Weighted ranks (a resample counts original pair u w_u times): mid-ranks of the expanded vector,
rank(v) = sum_{u < v} w_u + (sum_{u = v} w_u + 1) / 2, by a histogram over integer order keys (`weighted_ranks`)
or, when one vector is ranked under many weights, by a once-per-vector sort plan (`rank_plan`, `planned_ranks`).
"""

import jax
import jax.numpy as jnp
from jax import lax


def as_float(x: jax.Array) -> jax.Array:
  """At least float32 (bf16/f16 inputs are upcast before any arithmetic)."""
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _sort_key(v: jax.Array) -> jax.Array:
  """Integer key with the order of v (-0.0 == 0.0); NaNs get some key and are handled by the caller.

  Subnormal floats compare equal to 0 on XLA's CPU backend (flush-to-zero), so they tie with 0.
  """
  if jnp.issubdtype(v.dtype, jnp.integer) or v.dtype == jnp.bool_:
    return v.astype(jnp.promote_types(v.dtype, jnp.int32))
  v = as_float(v)
  itype = jnp.int64 if v.dtype == jnp.float64 else jnp.int32
  v = jnp.where(v == 0, jnp.zeros_like(v), v)
  b = lax.bitcast_convert_type(v, itype)
  # IEEE sign-magnitude -> two's complement order: negative floats have their magnitude bits flipped.
  return jnp.where(b < 0, b ^ jnp.array(jnp.iinfo(itype).max, itype), b)


def _lower_bound(s: jax.Array, q: jax.Array) -> jax.Array:
  """int32 [P]: for each q (an element of sorted int keys s [P]), how many elements of s are < q.

  A binary search over all of s costs log2(P) = 18 dependent gathers per query at P = 258,840.
  Instead a direct-address table over the key range (2^bits buckets of equal width, bits ~ log2 P)
  gives each query its bucket's slice of s, and the search only halves that slice: typically a
  few steps. The step count comes from the fullest bucket, so clustered or tied keys stay exact,
  just slower (at worst the full search).
  """
  p = s.shape[0]
  nbits = jnp.iinfo(s.dtype).bits
  utype = jnp.uint64 if nbits == 64 else jnp.uint32
  bits = min(16, max(1, p.bit_length() - 2))  # ~4 keys per bucket when spread evenly
  offset = lambda x: lax.bitcast_convert_type(x - s[0], utype)  # wraps correctly: x >= s[0]
  width = nbits - lax.clz(offset(s[-1])).astype(jnp.int32)  # bit length of the key range
  shift = jnp.maximum(width - bits, 0).astype(utype)
  bucket = (offset(q) >> shift).astype(jnp.int32)  # [P], < 2^bits
  count = jnp.zeros(1 << bits, jnp.int32).at[bucket].add(1)  # keys per bucket
  first = jnp.cumsum(count) - count  # position in s of each bucket's first key
  lo, hi = first[bucket], first[bucket] + count[bucket]  # the answer lies in [lo, hi)
  steps = 32 - lax.clz(jnp.max(count))  # ceil(log2(max count + 1)) halvings empty every range

  def halve(_, bounds):
    lo, hi = bounds
    mid = (lo + hi) // 2
    left = (q <= s[jnp.minimum(mid, p - 1)]) | (lo >= hi)
    return jnp.where(left, lo, mid + 1), jnp.where(left, mid, hi)

  lo, _ = lax.fori_loop(0, steps, halve, (lo, hi))
  return lo


def _doubled_ranks_1d(k: jax.Array) -> jax.Array:
  """int [P] sort keys -> int32 [P]: 2 x average rank, i.e. (first + 1) + (last + 1) of the tie run."""
  s = lax.sort(k)  # one integer operand: the fast sort path on CPU
  start = _lower_bound(s, k)  # elements < k = first position of k's tie run
  ties = jnp.zeros(k.shape, jnp.int32).at[start].add(1)  # size of each tie run, at its start
  return 2 * start + 1 + ties[start]  # run [start, start + t) -> ranks start + 1 .. start + t


def doubled_ranks(v: jax.Array) -> jax.Array:
  """[..., P] -> int32 [..., P]: 2 x average rank (always an integer, so exact), ties share their mean."""
  p = v.shape[-1]
  if p == 0:
    return jnp.zeros(v.shape, jnp.int32)
  keys = _sort_key(v).reshape(-1, p)  # [B, P]
  return lax.map(_doubled_ranks_1d, keys, batch_size=loop_batch(keys.shape[0])).reshape(v.shape)


def loop_batch(n: int) -> int:
  """lax.map batch size: on CPU one item at a time keeps its working set (~1 MB vectors at P =
  258,840) in cache, ~2x faster than whole-batch ops; accelerators take all n at once (a vmap)."""
  return 1 if jax.default_backend() == "cpu" else max(n, 1)


def nan_rows(v: jax.Array) -> jax.Array:
  """bool [..., 1]: vectors that contain a NaN (their ranks are undefined, as in SciPy)."""
  if not jnp.issubdtype(v.dtype, jnp.floating):
    return jnp.zeros((*v.shape[:-1], 1), dtype=bool)
  return jnp.any(jnp.isnan(v), axis=-1, keepdims=True)


def average_ranks(v: jax.Array) -> jax.Array:
  """1-based ranks along the last axis, ties sharing their mean rank (`scipy.stats.rankdata`).

  Sort-based, O(P log P) per vector, jit-able. Exact in float32 for P <= 2**23 (half-integer
  ranks above that are rounded; `centred_ranks` stays exact up to P < 2**24).

  Args:
    v: [..., P] values (float or int).
  Returns:
    float [..., P] ranks; a vector containing a NaN gets all-NaN ranks (SciPy's "propagate").
  """
  v = jnp.asarray(v)
  out = jnp.promote_types(v.dtype, jnp.float32) if jnp.issubdtype(v.dtype, jnp.floating) else jnp.float32
  r = doubled_ranks(v).astype(out) * 0.5
  return jnp.where(nan_rows(v), jnp.nan, r)


def centred_doubled_ranks(v: jax.Array) -> tuple[jax.Array, jax.Array]:
  """[..., P] -> (2 x centred ranks, exact integers as float [..., P]; their L2 norm [..., 1], NaN if undefined)."""
  p = v.shape[-1]
  out = jnp.promote_types(v.dtype, jnp.float32) if jnp.issubdtype(v.dtype, jnp.floating) else jnp.float32
  # 2 x rank - 2 x mean rank = 2 r - (P + 1): an exact integer, |.| < P.
  c = (doubled_ranks(v) - (p + 1)).astype(out)
  norm = jnp.linalg.norm(c, axis=-1, keepdims=True)  # 0 for a constant vector: 0 / 0 = NaN below
  return c, jnp.where(nan_rows(v), jnp.nan, norm)


def centred_ranks(v: jax.Array) -> jax.Array:
  """Average ranks, centred and scaled to unit L2 norm along the last axis.

  The Pearson r of two such vectors is their dot product, i.e. Spearman's rho of the inputs.

  Args:
    v: [..., P] values.
  Returns:
    float [..., P]; NaN where v contains a NaN or is constant (Spearman's rho is then undefined).
  """
  c, norm = centred_doubled_ranks(jnp.asarray(v))
  return c / norm


def order_keys(v: jax.Array) -> jax.Array:
  """[..., P] values -> int32 [..., P] keys in [1, P] with the order and ties of v (average rank // 1)."""
  # 2 x average rank of a tie run [s, s + t) is 2s + 1 + t; halving keeps distinct runs distinct.
  return doubled_ranks(v) // 2


def weighted_ranks(keys: jax.Array, w: jax.Array, nbins: int) -> jax.Array:
  """Mid-ranks of the expanded vector. keys: int [P] in [0, nbins); w: [P] >= 0 -> [P] (any for w = 0)."""
  h = jnp.zeros(nbins, w.dtype).at[keys].add(w)  # total weight per distinct value
  cum = lax.associative_scan(jnp.add, h)  # ~5x faster than jnp.cumsum on the XLA CPU backend
  hk = h[keys]
  return cum[keys] - (hk - 1.0) / 2.0  # below + (tie weight + 1) / 2


# Tied entries a vector may have for `rank_plan`'s counting path (beyond that: one key/value sort). Float32
# RDMs of a few hundred stimuli have a few thousand (258,840 distances in [0, 2] share float32 values).
PLAN_TIE_CAPACITY = 16384


def rank_plan(keys: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-vector precomputation that turns weighted ranking into gathers and one prefix sum (no scatter).

  keys: `order_keys` output, int [..., P] in [1, P] -> (order, lo, hi), int32 [..., P] each: the stable sort
  order of the keys (`jnp.argsort`), and for every original entry u the sorted positions [lo_u, hi_u) of its
  tie run. Built once per vector; `planned_ranks` then ranks under any weights. The runs come from a
  histogram of the keys (a counting sort): an untied entry's position is lo_u; only the tied entries (at most
  PLAN_TIE_CAPACITY) are sorted, by (key, index), to place them in their runs (~8 ms per 258,840-entry vector
  with a few thousand ties on CPU, instead of ~70 ms for a key/value sort, which remains the path for vectors
  with more ties; a tie-free vector is one scatter, ~2 ms; `lax.switch` picks per vector). All paths give the
  same plan.
  """
  p = keys.shape[-1]
  pos = jnp.arange(p, dtype=jnp.int32)
  cap = min(PLAN_TIE_CAPACITY, p)

  def counting(k, count, lo, hi):
    tied = count[k] > 1
    # the tied entries' indices in increasing order (padding: p), then sorted by key (stable: ties by index)
    idx = jnp.nonzero(tied, size=cap, fill_value=p)[0].astype(jnp.int32)
    tk = jnp.where(idx < p, k[jnp.minimum(idx, p - 1)], p + 1)
    tk, idx = lax.sort((tk, idx), num_keys=1, is_stable=True)
    first = lax.cummax(jnp.where(jnp.concatenate([jnp.ones(1, bool), tk[1:] != tk[:-1]]), jnp.arange(cap), 0))
    slot = lo[jnp.minimum(idx, p - 1)] + (jnp.arange(cap) - first)  # run start + place within the run
    target = jnp.where(tied, p, lo)  # untied entries sit at their run start; tied ones are placed below
    order = jnp.zeros(p, jnp.int32).at[target].set(pos, mode="drop", unique_indices=True)
    order = order.at[jnp.where(idx < p, slot, p)].set(idx, mode="drop", unique_indices=True)
    return order, lo, hi

  def tie_free(k, count, lo, hi):  # a permutation of 1..P: one scatter
    return jnp.zeros(p, jnp.int32).at[lo].set(pos, unique_indices=True), lo, hi

  def sorting(k, count, lo, hi):
    return jnp.argsort(k).astype(jnp.int32), lo, hi

  def one(k):
    k = k.astype(jnp.int32)
    count = jnp.zeros(p + 1, jnp.int32).at[k].add(1)  # entries per key
    below = jnp.cumsum(count) - count  # entries with a smaller key
    lo = below[k]
    hi = lo + count[k]
    n_tied = jnp.sum(jnp.where(count > 1, count, 0))
    branch = jnp.where(n_tied == 0, 0, jnp.where(n_tied <= cap, 1, 2))
    return lax.switch(branch, (tie_free, counting, sorting), k, count, lo, hi)

  flat = keys.reshape(-1, p)
  return tuple(a.reshape(keys.shape) for a in lax.map(one, flat))


def planned_ranks(plan: tuple[jax.Array, jax.Array, jax.Array], w: jax.Array) -> jax.Array:
  """Weighted mid-ranks of one vector from its `rank_plan` (order, lo, hi) [P] each and weights w [P] -> [P].

  Equal to `weighted_ranks`: with C the prefix sums of w in sorted order (C_0 = 0), an entry whose tie run
  occupies sorted positions [lo, hi) has weight C_lo below it and C_hi - C_lo tied with it, so its mid-rank
  is C_lo + (C_hi - C_lo + 1) / 2 = (C_lo + C_hi + 1) / 2. About 1.3x faster than the histogram on the
  XLA CPU backend (its scatter-add is slow); used where the same vectors are ranked under many weights.
  """
  order, lo, hi = plan
  c = lax.associative_scan(jnp.add, w[order])
  c = jnp.concatenate([jnp.zeros(1, c.dtype), c])
  return (c[lo] + c[hi] + 1.0) / 2.0
