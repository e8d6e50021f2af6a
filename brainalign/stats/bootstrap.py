"""The stimulus bootstrap of the whole RSA grid and the noise ceiling, in one compiled call over all resamples
(optionally split over devices: brainalign.devices.resample_mesh). See brainalign.stats."""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from brainalign import ranks
from brainalign.stats.kernels import _RANKED, _ceiling, _check_method, _grid, _prepare_vectors, _scores
from brainalign.stats.tau import _ceiling_tau, _key_bits, _tau_grid, _tau_order


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


# Ranking strategy of the ranked comparators: a `rank_plan` costs ~2-10 ms per 258,840-entry vector on CPU
# (a counting sort; a key/value sort, ~70 ms, only for vectors with many ties) and saves ~20 % of every
# resample. Both strategies give identical ranks; below this many resamples the histogram is kept.
PLAN_MIN_RESAMPLES = 64


def _prepare_impl(model_vectors, brain_vectors, *, method, mean_rdm, rank_plan):
  """What every resample shares: the vectors' keys (and rank plans) and their NaN flags, computed once."""
  if mean_rdm:  # the subject-mean RDM (element-wise mean of the raw dissimilarities) as one more "subject"
    brain_vectors = jnp.concatenate([brain_vectors, jnp.mean(brain_vectors, axis=0, keepdims=True)])
  model_data, model_bad = _prepare_vectors(model_vectors, method)
  brain_data, brain_bad = _prepare_vectors(brain_vectors, method)
  if method == "tau-a":  # order x (the model) once per vector; the brain keys serve as y and, sorted, as x
    model_data = _tau_order(model_data)
    brain_data = (brain_data, *_tau_order(brain_data))
  elif method in _RANKED and rank_plan:  # sort every vector once; each resample ranks by gathers + a prefix sum
    model_data, brain_data = ranks.rank_plan(model_data), ranks.rank_plan(brain_data)
  return model_data, model_bad, brain_data, brain_bad


def _resamples_impl(prepared, i, j, resamples, *, n, method, batch_size, model_chunk, s_count):
  """The statistics of every resample row [B, n] on the prepared vectors (`_prepare_impl`)."""
  model_data, model_bad, brain_data, brain_bad = prepared
  pool_bins = _pool_bins(s_count, n * (n - 1) // 2)

  def one(idx):  # [n] stimulus indices of one resample
    counts = jnp.zeros(n, jnp.float32).at[idx].add(1.0)
    return _evaluate(
      counts, model_data, model_bad, brain_data, brain_bad, i, j, method, model_chunk, pool_bins, s_count
    )

  return lax.map(one, resamples, batch_size=batch_size)


_prepare = jax.jit(_prepare_impl, static_argnames=("method", "mean_rdm", "rank_plan"))
_resamples = jax.jit(_resamples_impl, static_argnames=("n", "method", "batch_size", "model_chunk", "s_count"))


def in_chunks(run, resamples: jax.Array, chunk: int | None, progress=None):
  """run(rows [b, n]) -> pytree with leading axis b, evaluated `chunk` rows at a time (the last chunk padded
  with copies of row 0 so that every call has the same shape and compiles once; the padding is dropped).

  progress: called as progress(rows done, rows in all) after each chunk. chunk None (or >= B): one call.
  Every row is computed by the same program whatever the chunking, so the results do not depend on it."""
  b = int(resamples.shape[0])
  if not chunk or chunk >= b:
    out = run(resamples)
    if progress is not None:
      jax.block_until_ready(out)
      progress(b, b)
    return out
  parts = []
  for start in range(0, b, chunk):
    rows = resamples[start : start + chunk]
    if rows.shape[0] < chunk:
      rows = jnp.concatenate([rows, jnp.broadcast_to(resamples[:1], (chunk - rows.shape[0], resamples.shape[1]))])
    parts.append(jax.block_until_ready(run(rows)))
    if progress is not None:
      progress(min(start + chunk, b), b)
  return jax.tree.map(lambda *xs: jnp.concatenate(xs)[:b], *parts)


def chunk_rows(chunk: int | None, batch_size: int, mesh) -> int | None:
  """`chunk` rounded up to a multiple of batch_size x devices (so chunking never regroups a lax.map batch)."""
  if not chunk:
    return None
  unit = int(batch_size) * (int(mesh.devices.size) if mesh is not None else 1)
  return -(-int(chunk) // unit) * unit


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


def _checked(model_vectors, brain_vectors, pairs, resamples, n: int, method: str):
  """The inputs of `bootstrap_rsa` as int32/float arrays, or ValueError naming the mismatch."""
  _check_method(method)
  model_vectors, brain_vectors = jnp.asarray(model_vectors), jnp.asarray(brain_vectors)
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
  return model_vectors, brain_vectors, (i, j), resamples


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
  chunk: int | None = None,
  progress=None,
) -> dict:
  """RSA of every model RDM vs every (ROI, subject) and the noise ceiling, on every resample, in one call
  (or one call per `chunk` resamples, after one shared preparation of the vectors).

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
      of the S subjects' dissimilarities, the P1 v1/v2 group convention, docs/methods.md §7.7), on the same
      resamples.
    rank_plan: spearman / rho-a only: rank through a per-vector sort plan (`rank_plan`; faster per
      resample, one sort per vector up front) instead of a histogram per resample; None = when there are at
      least `PLAN_MIN_RESAMPLES` resamples. Both give identical ranks.
    mesh: a one-axis `jax.sharding.Mesh` (brainalign.devices.resample_mesh) to split the resamples over its
      devices, or None; the rows and so the results are the same whatever the device count.
    chunk: evaluate this many resamples per compiled call (rounded up to a multiple of batch_size x devices),
      e.g. to report progress; None = all in one call. The results do not depend on it.
    progress: progress(rows done, rows in all) after each call (`in_chunks`).
  Returns:
    {"rho": [B, V, R, S], "noise_lower": [B, R], "noise_upper": [B, R]} float32, plus "rho_mean_rdm"
    [B, V, R] if mean_rdm; NaN where a vector contains NaN (degenerate RDM) or a resample leaves no variance.
    With a single brain RDM per ROI (S = 1) there is no noise ceiling: "noise_lower"/"noise_upper" are NaN.
  """
  model_vectors, brain_vectors, (i, j), resamples = _checked(model_vectors, brain_vectors, pairs, resamples, n, method)
  model_chunk = max(1, min(int(model_chunk), model_vectors.shape[0]))
  plan = bool(resamples.shape[0] >= PLAN_MIN_RESAMPLES if rank_plan is None else rank_plan)
  s_count = brain_vectors.shape[0]
  prepared = _prepare(model_vectors, brain_vectors, method=method, mean_rdm=bool(mean_rdm), rank_plan=plan)
  static = dict(n=int(n), method=method, batch_size=int(batch_size), model_chunk=model_chunk, s_count=s_count)
  if mesh is not None and mesh.devices.size > 1:
    split = _over_resamples(_resamples_impl, mesh, 4, **static)
    run = lambda rows: _split_resamples(split, rows, mesh, prepared, i, j)
  else:
    run = lambda rows: _resamples(prepared, i, j, rows, **static)
  rho, lower, upper = in_chunks(run, resamples, chunk_rows(chunk, batch_size, mesh), progress)
  out = {"rho": rho[..., :s_count], "noise_lower": lower, "noise_upper": upper}
  if mean_rdm:
    out["rho_mean_rdm"] = rho[..., s_count]
  return out
