"""rsatoolbox-style comparisons and noise ceilings of plain (not resampled) RDM vectors. See brainalign.stats."""

import functools

import jax
import jax.numpy as jnp

from brainalign.stats.bootstrap import _pool_bins
from brainalign.stats.kernels import _ceiling, _check_method, _grid, _prepare_vectors, _scores
from brainalign.stats.tau import _ceiling_tau, _tau_a_jit, _tau_order


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
