"""The comparators (rsatoolbox names) as weighted kernels: a stimulus resample is a vector of integer pair
weights over the original pairs (all ones = no resampling), and every statistic is computed under them; plus the
weighted noise ceiling (Nili et al. 2014, pooled as rsatoolbox's `pool_rdm`). See brainalign.stats."""

import jax
import jax.numpy as jnp
from jax import lax

from brainalign.ranks import order_keys, planned_ranks, weighted_ranks

COMPARATORS = ("spearman", "rho-a", "corr", "cosine", "tau-a")
_RANKED = ("spearman", "rho-a")
_KEYED = ("spearman", "rho-a", "tau-a")  # comparators that see only the order (and ties) of the values


def _check_method(method: str) -> None:
  if method not in COMPARATORS:
    raise ValueError(f"unknown comparator {method!r}; expected one of {COMPARATORS}")


# ----------------------------------------------------------------------------------------------------
# Weighted kernels (weights = multiplicities of the original pairs in a resample; all ones = no resampling)
# ----------------------------------------------------------------------------------------------------


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
    return order_keys(v), bad
  return v, bad


def _scores(data: jax.Array, w: jax.Array, method: str, nbins: int) -> jax.Array:
  """The comparator's per-vector transform under weights w [P] (centred where the comparator centres).

  data: `_prepare_vectors` output [..., P] (ranked comparators: int keys in [0, nbins), or their
  `rank_plan`) -> float [..., P].
  """
  if method in _RANKED:
    # one vector at a time: a vmapped scatter-add is ~10x slower on the XLA CPU backend
    if isinstance(data, tuple):  # rank plans
      shape = data[0].shape
      rank_one = lambda plan: planned_ranks(plan, w)
    else:
      shape = data.shape
      rank_one = lambda k: weighted_ranks(k, w, nbins)
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
