"""Readout features of every layer for a stimulus set, for all seeds at once.

BatchNorm mode at extraction (config `eval.bn_mode`):
  "running" (correct): BN uses the stored running statistics, so an image's features do not depend on which
      other images share its batch. Chunking is only for memory; the last chunk is zero-padded to the
      chunk size (one compiled shape) and the padding is dropped.
  "batch" (the reference implementation's defect for PC and STDP, docs/methods.md §6.1): BN normalises each
      evaluation batch with that batch's own statistics (biased variance), with the reference batch size
      and the fixed stimulus order; the last, smaller batch is kept as it is. Use it only to reproduce
      published numbers; the results say so in their `bn_mode` column.

Averaged stimuli (config `eval.concept_features = "mean"` with `brain.selection = "concept_mean"`): the images
of all exemplars are passed in, each with the index of the RDM row (concept) it belongs to (`segments`), and
the features of each row are the mean over its images (`segment_mean`, one jnp segment sum); the RDM is then
built from these mean vectors. In "batch" mode the evaluation batches are batches of exemplar images.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from brainalign import devices

BN_MODES = ("running", "batch")


def segment_mean(features: jax.Array, segments: np.ndarray, num_segments: int) -> jax.Array:
  """Mean of the features of each segment (e.g. all exemplar images of one concept).

  Args:
    features: [S, m, d] features of m images (for S seeds).
    segments: [m] int, the segment (RDM row) of each image, in 0..num_segments-1; every segment non-empty.
    num_segments: n.
  Returns:
    [S, n, d]: row i is the mean over the images with segments == i.
  """
  segments = np.asarray(segments)
  counts = np.bincount(segments, minlength=num_segments)
  if segments.ndim != 1 or segments.shape[0] != features.shape[1] or len(counts) != num_segments or (counts == 0).any():
    raise ValueError(
      f"segments must be [m={features.shape[1]}] ints covering 0..{num_segments - 1}, each at least "
      f"once; got shape {segments.shape}, counts {counts.tolist()}"
    )
  x = jnp.swapaxes(jnp.asarray(features), 0, 1)  # [m, S, d]
  sums = jax.ops.segment_sum(x, jnp.asarray(segments), num_segments=num_segments)
  return jnp.swapaxes(sums / jnp.asarray(counts, x.dtype)[:, None, None], 0, 1)


def make_extractor(
  model: Any, *, bn_mode: str, batch_size: int, rule_features: Callable | None = None, mesh: Any = None
) -> Callable:
  """Returns extract(params, batch_stats, images, rule_state=None, segments=None) -> {layer: np.ndarray [S, n, d]}.

  Args:
    model: the flax CNN (its apply returns (logits, {layer: [B, d]})).
    bn_mode: "running" or "batch" (see module docstring).
    batch_size: images per forward pass (the reference batch in "batch" mode; memory only in "running").
    rule_features: a rule's own fn(variables, images, bn_batch_stats) -> {layer: [B, d]} (e.g. predictive
      coding's inference loop), or None for the plain forward pass.
    mesh: the seed mesh (brainalign.devices) the parameters are split over, or None (one device).
  The returned fn takes params/batch_stats (and optionally the rule state, which rule_features may need)
  with a leading [S] seed axis and images [n, R, R, 3] (normalised, host or device) and runs one compiled
  forward pass per chunk, seed by seed (`devices.per_seed`: the same numbers on any number of devices; dropout
  always off). segments: None (one image per stimulus, n = images) or [m] int
  RDM row of each of the m images: the features returned are then the per-row means (`segment_mean`), with
  n = max(segments) + 1.
  """
  if bn_mode not in BN_MODES:
    raise ValueError(f"eval.bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
  use_batch = bn_mode == "batch"

  def one_seed(params, batch_stats, images, rule_state):
    variables = {"params": params, "batch_stats": batch_stats}
    if rule_features is not None:
      return rule_features(dict(variables, rule_state=rule_state), images, use_batch)
    if use_batch:
      (_, feats), _ = model.apply(variables, images, train=False, bn_batch_stats=True, mutable=["batch_stats"])
    else:
      _, feats = model.apply(variables, images, train=False)
    return feats

  forward = devices.per_seed(lambda one, shared: one_seed(one[0], one[1], shared[0], one[2]), mesh)

  def extract(params, batch_stats, images, rule_state=None, segments=None) -> dict[str, np.ndarray]:
    n = images.shape[0]
    outs = []
    for start in range(0, n, batch_size):  # a handful of chunks; order matters in "batch" mode
      chunk = np.asarray(images[start : start + batch_size])
      real = chunk.shape[0]
      if not use_batch and real < batch_size:
        chunk = np.concatenate([chunk, np.zeros((batch_size - real,) + chunk.shape[1:], chunk.dtype)])
      feats = forward((params, batch_stats, rule_state), (chunk,))  # host chunk: replicated to the seeds' devices
      outs.append({k: v[:, :real] for k, v in feats.items()})
    joined = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *outs)
    if segments is not None:
      n_rows = int(np.max(segments)) + 1
      joined = {k: segment_mean(v, segments, n_rows) for k, v in joined.items()}
    return {k: np.asarray(v) for k, v in devices.gather(joined).items()}

  return extract
