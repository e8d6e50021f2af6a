"""Partial RSA: Spearman partial correlation of model and brain RDMs controlling for a nuisance RDM (pixels,
luminance), plain and under the stimulus bootstrap. See brainalign.stats."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from brainalign import rsa
from brainalign.ranks import order_keys
from brainalign.stats.bootstrap import _over_resamples, _split_resamples, chunk_rows, in_chunks
from brainalign.stats.kernels import _grid, _prepare_vectors, _scores

# ----------------------------------------------------------------------------------------------------
# Partial RSA (docs/methods.md §8.10)
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
      a, b = ranks(order_keys(ex)), ranks(order_keys(ey))
    else:  # "closed": Pearson of the residuals (weighted means are already 0)
      a, b = ex, ey
    sim = _grid(a, b, w, "corr")
    out[form] = jnp.where(dead, jnp.nan, sim)
  return out


def _partial_prepare_impl(model_vectors, brain_vectors, controls):
  """The order keys and NaN flags of every vector, shared by all resamples."""
  return tuple(_prepare_vectors(v, "spearman") for v in (model_vectors, brain_vectors, controls))


def _partial_resamples_impl(prepared, i, j, resamples, *, forms, batch_size):
  (x_keys, x_bad), (y_keys, y_bad), (z_keys, z_bad) = prepared
  n = resamples.shape[1]
  p = i.shape[0]

  def one(idx):  # [n] stimulus indices of one resample -> {form: [C, V, K]}
    counts = jnp.zeros(n, jnp.float32).at[idx].add(1.0)
    w = counts[i] * counts[j]
    rx, ry, rz = (_scores(k, w, "spearman", p + 1) for k in (x_keys, y_keys, z_keys))
    return lax.map(lambda z: _partial_one(rx, ry, z, w, forms), rz)

  out = lax.map(one, resamples, batch_size=batch_size)
  bad = z_bad[:, None, None] | x_bad[None, :, None] | y_bad[None, None, :]
  return {f: jnp.where(bad[None], jnp.nan, v) for f, v in out.items()}


_partial_prepare = jax.jit(_partial_prepare_impl)
_partial_resamples = jax.jit(_partial_resamples_impl, static_argnames=("forms", "batch_size"))


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
  chunk: int | None = None,
  progress=None,
) -> dict:
  """Partial Spearman RSA (`partial_spearman`) on every stimulus resample, in one compiled call (or one per
  `chunk` resamples: see `bootstrap_rsa`; the results do not depend on it).

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
    chunk, progress: as for `bootstrap_rsa`.
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
  prepared = _partial_prepare(model_vectors, brain_vectors, controls)
  static = dict(forms=forms, batch_size=int(batch_size))
  if mesh is not None and mesh.devices.size > 1:
    split = _over_resamples(_partial_resamples_impl, mesh, 4, **static)
    run = lambda rows: _split_resamples(split, rows, mesh, prepared, i, j)
  else:
    run = lambda rows: _partial_resamples(prepared, i, j, rows, **static)
  return in_chunks(run, resamples, chunk_rows(chunk, batch_size, mesh), progress)


def pixel_rdm_vector(images: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
  """Pixel RDM (docs/methods.md §8.10): correlation distance of flattened RGB images in [0, 1].

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
