"""Readout features of every layer for a stimulus set, for all seeds at once.

BatchNorm mode at extraction (config `eval.bn_mode`):
  "running" (correct): BN uses the stored running statistics, so an image's features do not depend on which
      other images share its batch. Chunking is only for memory; the last chunk is zero-padded to the
      chunk size (one compiled shape) and the padding is dropped.
  "batch" (the reference implementation's defect for PC and STDP, study.md §6.1): BN normalises each
      evaluation batch with that batch's own statistics (biased variance), with the reference batch size
      and the fixed stimulus order; the last, smaller batch is kept as it is. Use it only to reproduce
      published numbers; the results say so in their `bn_mode` column.
"""
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

BN_MODES = ("running", "batch")


def make_extractor(model: Any, *, bn_mode: str, batch_size: int,
                   rule_features: Optional[Callable] = None) -> Callable:
  """Returns extract(params, batch_stats, images, rule_state=None) -> {layer: np.ndarray [S, n, d]}.

  Args:
    model: the flax CNN (its apply returns (logits, {layer: [B, d]})).
    bn_mode: "running" or "batch" (see module docstring).
    batch_size: images per forward pass (the reference batch in "batch" mode; memory only in "running").
    rule_features: a rule's own fn(variables, images, bn_batch_stats) -> {layer: [B, d]} (e.g. predictive
      coding's inference loop), or None for the plain forward pass.
  The returned fn takes params/batch_stats (and optionally the rule state, which rule_features may need)
  with a leading [S] seed axis and images [n, R, R, 3] (normalised, host or device) and runs one vmapped
  forward pass per chunk (dropout always off).
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

  forward = jax.jit(jax.vmap(one_seed, in_axes=(0, 0, None, 0)))

  def extract(params, batch_stats, images, rule_state=None) -> dict[str, np.ndarray]:
    n = images.shape[0]
    outs = []
    for start in range(0, n, batch_size):   # a handful of chunks; order matters in "batch" mode
      chunk = np.asarray(images[start:start + batch_size])
      real = chunk.shape[0]
      if not use_batch and real < batch_size:
        chunk = np.concatenate([chunk, np.zeros((batch_size - real,) + chunk.shape[1:], chunk.dtype)])
      feats = forward(params, batch_stats, jnp.asarray(chunk), rule_state)
      outs.append({k: v[:, :real] for k, v in feats.items()})
    joined = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *outs)
    return {k: np.asarray(v) for k, v in jax.device_get(joined).items()}

  return extract
