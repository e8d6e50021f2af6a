"""Representational similarity analysis (RSA) as one jitted function over the whole score grid.

Spearman's rho is Pearson's r on average ranks, so once every dissimilarity vector is replaced by
its centred, unit-norm ranks, each comparison is a dot product:

    rho[..., l, r, s] = centred_ranks(model_vectors)[..., l, :] @ centred_ranks(brain_vectors)[s, r, :]

The brain ranks are fixed and computed ONCE (`rank_brain`); each model RDM is ranked once per
(seed, milestone, layer) instead of once per comparison, as the reference implementation's
`scipy.stats.spearmanr` loop does. `rsa_grid` does the whole [..., L, R, S] grid in one compiled
call (`docs/methods.md` §8.1-8.2, `docs/contributing.md` §12); `bench/rsa.py` times it against that loop and
rsatoolbox.

Conventions:
  * Pairs are the strict upper triangle in row-major order (`np.triu_indices(n, k=1)`), or any
    subset of it given as index arrays (e.g. the cross-run pairs, `docs/methods.md` §7.8).
  * Dissimilarities follow `scipy.spatial.distance.pdist`: "correlation" = 1 - Pearson r across
    features, "cosine" = 1 - cos, "euclidean" = L2 distance.
  * Undefined values are NaN, never a silent number: a constant feature row has no correlation
    distance (an all-zero row no cosine distance); its RDM entries are NaN, so every rho of that
    layer is NaN. `constant_rows` tells callers which stimuli/layers are degenerate. (SciPy is not
    consistent here: depending on rounding of the row mean it returns NaN or a spurious 1.0.)

Ranking: brainalign.ranks (shared with the statistics).
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from brainalign.ranks import as_float, centred_doubled_ranks, loop_batch
from brainalign.ranks import average_ranks as average_ranks  # re-exported: part of brainalign.rsa's API
from brainalign.ranks import centred_ranks as centred_ranks

METRICS = ("correlation", "cosine", "euclidean")


def pair_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
  """All pairs i < j of n stimuli, row-major, as `np.triu_indices(n, k=1)`.

  Args:
    n: number of stimuli.
  Returns:
    (i, j), int32 [P] each, P = n (n - 1) / 2.
  """
  i, j = np.triu_indices(n, k=1)
  return i.astype(np.int32), j.astype(np.int32)


def constant_rows(x: jax.Array) -> jax.Array:
  """Which rows are constant across features (their correlation distance is undefined).

  Args:
    x: [..., n, d] features (or voxel patterns) of n stimuli.
  Returns:
    bool [..., n], True where every feature of the stimulus has the same value.
  """
  return jnp.max(x, axis=-1) == jnp.min(x, axis=-1)


def _gram(z: jax.Array) -> jax.Array:
  """[..., n, d] -> [..., n, n] inner products at full float32 precision (no TF32 on GPUs)."""
  return jnp.einsum("...id,...jd->...ij", z, z, precision=lax.Precision.HIGHEST)


def rdm(x: jax.Array, metric: str = "correlation") -> jax.Array:
  """Representational dissimilarity matrix, as `squareform(pdist(x, metric))`.

  Args:
    x: [..., n, d] features of n stimuli (any leading axes, e.g. [seeds, milestones]).
    metric: "correlation" (1 - Pearson r across features), "cosine" (1 - cosine similarity) or
      "euclidean" (L2 distance, Gram form on stimulus-centred features, tiny negative squared
      distances from rounding clamped to 0, exact 0 diagonal).
  Returns:
    [..., n, n] symmetric dissimilarities with an exact 0 diagonal. Rows and columns of constant
    stimuli are NaN for "correlation", of all-zero stimuli NaN for "cosine" (their diagonal
    entries included).
  """
  z, sq = _prepare(x, metric)
  n = z.shape[-2]
  lead = (1,) * (z.ndim - 2)
  sq_i = None if sq is None else sq[..., :, None]
  sq_j = None if sq is None else sq[..., None, :]
  same = jnp.eye(n, dtype=bool).reshape(*lead, n, n)
  return _finish(metric, _gram(z), sq_i, sq_j, same)


def rdm_vectors(x: jax.Array, pairs: tuple[jax.Array, jax.Array], metric: str = "correlation") -> jax.Array:
  """Upper-triangle dissimilarity vectors, `rdm(x, metric)[..., i, j]` for the given pairs.

  Args:
    x: [..., n, d] features of n stimuli.
    pairs: (i, j), int [P] each: stimulus indices of each pair (`pair_indices(n)` or a subset).
    metric: one of `METRICS`.
  Returns:
    [..., P] dissimilarities d(x_i, x_j), in the order of `pairs`.
  """
  z, sq = _prepare(x, metric)
  i, j = (jnp.asarray(a) for a in pairs)
  n = z.shape[-2]
  gram = _gram(z)  # [..., n, n]: one per model (seed, milestone, layer), never per ROI or subject
  g = jnp.take(gram.reshape(*gram.shape[:-2], n * n), i * n + j, axis=-1)  # [..., P]
  sq_i = None if sq is None else jnp.take(sq, i, axis=-1)
  sq_j = None if sq is None else jnp.take(sq, j, axis=-1)
  same = (i == j).reshape((1,) * (g.ndim - 1) + i.shape)
  return _finish(metric, g, sq_i, sq_j, same)


def _prepare(x: jax.Array, metric: str) -> tuple[jax.Array, jax.Array | None]:
  """[..., n, d] -> rows whose Gram matrix gives the metric, and squared norms [..., n] (euclidean)."""
  if metric not in METRICS:
    raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
  x = as_float(x)
  if metric == "euclidean":
    # Distances are translation invariant; centring over stimuli shrinks |x|^2 and so the
    # cancellation error of |xi|^2 + |xj|^2 - 2 xi.xj.
    z = x - jnp.mean(x, axis=-2, keepdims=True)
    return z, jnp.sum(z * z, axis=-1)
  if metric == "correlation":
    z = x - jnp.mean(x, axis=-1, keepdims=True)
    degenerate = constant_rows(x)  # rounding of the mean can leave a tiny non-zero residue
  else:
    z = x
    degenerate = jnp.all(x == 0, axis=-1)
  z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
  return jnp.where(degenerate[..., None], jnp.nan, z), None  # undefined, not a number made of rounding


def _finish(metric, g, sq_i, sq_j, same):
  """Gram entries (and squared norms) -> dissimilarities; exact 0 for self-pairs unless undefined."""
  if metric == "euclidean":
    d = jnp.sqrt(jnp.maximum(sq_i + sq_j - 2.0 * g, 0.0))
  else:
    d = 1.0 - g  # NaN wherever a degenerate stimulus is involved
  return jnp.where(same & ~jnp.isnan(d), jnp.zeros_like(d), d)


@jax.jit
def rank_brain(brain_vectors: jax.Array) -> jax.Array:
  """Centred ranks of the brain dissimilarities; compute ONCE at load time and reuse.

  Args:
    brain_vectors: [S, R, P] dissimilarities per subject and ROI, over the pairs in use. To
      restrict to a pair subset, index the vectors first (`brain_vectors[..., subset]`): the
      brain must be ranked on the same pairs as the model.
  Returns:
    [S, R, P] centred, unit-norm average ranks.
  """
  return centred_ranks(brain_vectors)


def spearman_grid(model_vectors: jax.Array, brain_ranks: jax.Array) -> jax.Array:
  """Spearman rho of every model RDM against every (ROI, subject).

  Args:
    model_vectors: [..., L, P] model dissimilarities (e.g. [seeds, milestones, layers, pairs]).
    brain_ranks: [S, R, P] from `rank_brain`, over the same pairs in the same order.
  Returns:
    [..., L, R, S] rho; NaN where a model vector contains NaN (degenerate features).
  """
  if model_vectors.shape[-1] != brain_ranks.shape[-1]:
    raise ValueError(
      f"model has {model_vectors.shape[-1]} pairs, brain {brain_ranks.shape[-1]}: rank both on the same pairs"
    )
  return _rho(*centred_doubled_ranks(model_vectors), brain_ranks)


def _rho(c: jax.Array, norm: jax.Array, brain_ranks: jax.Array) -> jax.Array:
  """2 x centred model ranks [..., L, P] and their norms [..., L, 1] -> rho [..., L, R, S]."""
  dots = jnp.einsum("...lp,srp->...lrs", c, brain_ranks, precision=lax.Precision.HIGHEST)
  return dots / norm[..., None]  # normalising the [..., L, R, S] result saves a pass over [..., L, P]


@functools.partial(jax.jit, static_argnames=("metric",))
def _rsa_grid(features, brain_ranks, i, j, metric):
  """Jitted body of `rsa_grid`; `features` is a tuple (its length and shapes key the cache)."""
  lead, n = features[0].shape[:-2], features[0].shape[-2]
  flat = tuple(f.reshape(-1, n, f.shape[-1]) for f in features)  # [B, n, d_l], B = prod(lead)

  def cell(xs):  # one (seed, milestone) cell: on CPU its [n, n] and [L, P] buffers stay in cache
    vectors = jnp.stack([rdm_vectors(x, (i, j), metric) for x in xs])  # [L, P]
    return _rho(*centred_doubled_ranks(vectors), brain_ranks)  # [L, R, S]

  rho = lax.map(cell, flat, batch_size=loop_batch(flat[0].shape[0]))  # [B, L, R, S]
  return rho.reshape(*lead, *rho.shape[1:])


def rsa_grid(
  features: Sequence[jax.Array],
  brain_ranks: jax.Array,
  pairs: tuple[jax.Array, jax.Array],
  metric: str = "correlation",
) -> jax.Array:
  """The whole RSA score grid in one compiled call.

  For each cell of the leading axes (e.g. one seed at one milestone) and each layer, the model RDM
  is built from that layer's features (widths may differ), reduced to the pairs, ranked once, and
  compared with every (ROI, subject) by one einsum against the precomputed brain ranks. On CPU the
  cells run one after another (`lax.map`), so the working set is one cell's L Gram matrices
  [n, n] and vectors [L, P] (~2 MB and ~1 MB each at n = 720) and stays in cache; on accelerators
  all cells run at once. Nothing is built per ROI or subject.

  Args:
    features: one array per layer, [..., n, d_l] each, with the same leading axes (e.g.
      [seeds, milestones]) and the same n.
    brain_ranks: [S, R, P] from `rank_brain`, ranked over the same pairs.
    pairs: (i, j), int [P] each (`pair_indices(n)` or a subset). Traced, not static: a new subset
      of the same size does not recompile. Pass device arrays to avoid a host transfer per call.
    metric: model RDM metric, one of `METRICS` (static).
  Returns:
    [..., L, R, S] Spearman rho; NaN for a layer whose features have a constant row among the
    pairs used (see `constant_rows`).
  """
  if metric not in METRICS:
    raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
  features = tuple(features)
  if not features:
    raise ValueError("rsa_grid needs at least one layer")
  leading = {f.shape[:-1] for f in features}
  if len(leading) != 1:
    raise ValueError(f"all layers need the same [..., n] axes, got {sorted(leading)}")
  i, j = pairs
  i = jnp.asarray(i, dtype=jnp.int32)
  j = jnp.asarray(j, dtype=jnp.int32)
  if i.shape != j.shape or i.ndim != 1 or i.shape[0] != brain_ranks.shape[-1]:
    raise ValueError(
      f"pairs {i.shape}/{j.shape} vs brain ranks over {brain_ranks.shape[-1]} pairs: rank both on the same pairs"
    )
  return _rsa_grid(features, brain_ranks, i, j, metric=metric)


def _model_rdms_impl(features, i, j, metric):
  """Body of `model_rdms` (one cell of the leading axes at a time on CPU, as `_rsa_grid`)."""
  lead, n = features[0].shape[:-2], features[0].shape[-2]
  flat = tuple(f.reshape(-1, n, f.shape[-1]) for f in features)

  def cell(xs):
    return jnp.stack([rdm_vectors(x, (i, j), metric) for x in xs])  # [L, P]

  vectors = lax.map(cell, flat, batch_size=loop_batch(flat[0].shape[0]))
  return vectors.reshape(*lead, *vectors.shape[1:])


def _spearman_at_impl(vectors, brain_ranks, flat):
  lead = vectors.shape[:-2]
  cells = vectors.reshape(-1, *vectors.shape[-2:])

  def cell(v):  # [L, P_all] -> [L, R, S]: the pair subset, ranked once, one einsum against the brain
    return _rho(*centred_doubled_ranks(jnp.take(v, flat, axis=-1)), brain_ranks)

  rho = lax.map(cell, cells, batch_size=loop_batch(cells.shape[0]))
  return rho.reshape(*lead, *rho.shape[1:])


_model_rdms = jax.jit(_model_rdms_impl, static_argnames=("metric",))
_spearman_at = jax.jit(_spearman_at_impl)


@functools.lru_cache(maxsize=32)
def _per_device(mesh, kind: str, metric: str = ""):
  """The compiled call of `kind` with its leading (seed) axis split over `mesh` (`jax.shard_map`): each device
  computes the cells of its own seeds; everything else is replicated."""
  from jax.sharding import PartitionSpec as P

  axis = mesh.axis_names[0]
  if kind == "model_rdms":
    fn = lambda features, i, j: _model_rdms_impl(features, i, j, metric)
    specs = (P(axis), P(), P())  # every layer's features split on their first axis
  else:
    fn, specs = _spearman_at_impl, (P(axis), P(), P())
  return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P(axis)))


def model_rdms(features: Sequence[jax.Array], metric: str = "correlation", mesh=None) -> jax.Array:
  """Model RDMs of every layer over all pairs, for every cell of the leading axes, in one compiled call.

  Args:
    features: one array per layer, [..., n, d_l] each, with the same leading axes and n.
    metric: one of `METRICS` (static).
    mesh: a `jax.sharding.Mesh` whose one axis splits the first leading axis (seeds; brainalign.devices), or
      None (one device). The features may already be placed on it.
  Returns:
    [..., L, P] float32 upper triangles in `pair_indices(n)` order, P = n (n - 1) / 2 (split like the input).
  """
  if metric not in METRICS:
    raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
  features = tuple(features)
  if not features or len({f.shape[:-1] for f in features}) != 1:
    raise ValueError(f"need at least one layer, all with the same [..., n] axes; got {[f.shape for f in features]}")
  i, j = (jnp.asarray(a) for a in pair_indices(features[0].shape[-2]))
  if mesh is not None and mesh.devices.size > 1:
    return _per_device(mesh, "model_rdms", metric)(features, i, j)
  return _model_rdms(features, i, j, metric=metric)


def spearman_at(vectors: jax.Array, brain_ranks: jax.Array, flat: jax.Array, mesh=None) -> jax.Array:
  """Spearman rho of stored model RDMs against every (ROI, subject) on a pair subset, in one compiled call.

  Args:
    vectors: [..., L, P_all] model RDMs over all pairs (`model_rdms`).
    brain_ranks: [S, R, P'] from `rank_brain` on the subset.
    flat: int [P'] positions of the subset's pairs in the all-pairs order (traced: a new subset of the same
      size does not recompile).
    mesh: as in `model_rdms` (model rows split over its axis, the brain side replicated), or None.
  Returns:
    [..., L, R, S] rho; NaN for a model vector with NaN among the subset's pairs.
  """
  flat = jnp.asarray(flat, jnp.int32)
  if flat.ndim != 1 or flat.shape[0] != brain_ranks.shape[-1]:
    raise ValueError(
      f"flat {flat.shape} vs brain ranks over {brain_ranks.shape[-1]} pairs: rank both on the same pairs"
    )
  if mesh is not None and mesh.devices.size > 1:
    return _per_device(mesh, "spearman_at")(vectors, brain_ranks, flat)
  return _spearman_at(jnp.asarray(vectors), brain_ranks, flat)


def flat_index(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
  """Positions [P'] int64 of pairs (i, j), i < j, in the all-pairs order `pair_indices(n)` (closed form)."""
  i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
  return i * n - i * (i + 1) // 2 + (j - i - 1)
