"""The network is written twice: the flax module (`models.CNN`) and the functional blocks the layer-by-layer rules
use (`models.conv_block`, `models.batch_norm`, `models.readout_head`: predictive coding's inference loop, STDP's
per-layer update). This pins the two together: on random inputs and random (non-initial) parameters, both block
orders, running and batch BatchNorm statistics, conv with and without bias, the functional path gives the
module's readouts, logits and updated BN statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brainalign import models

SMALL = dict(conv_widths=(4, 8, 8), fc_width=16)


def _functional(variables, x, *, use_batch, pre_bn_relu):
  params, stats = variables["params"], variables["batch_stats"]
  feats, new_stats, h = {}, {}, x
  for i in (1, 2, 3):
    h, new_stats[f"bn{i}"] = models.conv_block(
      params, stats, i, h, impl="xla", use_batch=use_batch, pre_bn_relu=pre_bn_relu
    )
    feats[f"conv{i}"] = h.mean(axis=(1, 2))
  logits, feats["fc1"] = models.readout_head(params, h)
  return logits, feats, new_stats


@pytest.mark.parametrize("pre_bn_relu", [False, True])
@pytest.mark.parametrize("use_batch", [False, True])
@pytest.mark.parametrize("conv_bias", [False, True])
def test_functional_blocks_equal_the_flax_module(pre_bn_relu, use_batch, conv_bias):
  model = models.CNN(conv_impl="xla", conv_bias=conv_bias, pre_bn_relu=pre_bn_relu, **SMALL)
  x = jax.random.normal(jax.random.key(0), (5, 32, 32, 3))
  variables = model.init(jax.random.key(1), x, train=False)
  # move every parameter and statistic off its initial value, so a swapped or ignored one shows
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  leaves = [a + 0.3 * jax.random.normal(k, a.shape) if a.ndim else a for a, k in zip(leaves, keys)]
  leaves = [
    jnp.abs(a) + 0.5 if "var" in str(path) else a
    for a, (path, _) in zip(leaves, jax.tree_util.tree_flatten_with_path(variables)[0])
  ]
  variables = jax.tree.unflatten(tree, leaves)
  if use_batch:
    (logits, feats), updated = model.apply(variables, x, train=False, bn_batch_stats=True, mutable=["batch_stats"])
    stats = updated["batch_stats"]
  else:
    logits, feats = model.apply(variables, x, train=False)
    stats = variables["batch_stats"]
  f_logits, f_feats, f_stats = _functional(variables, x, use_batch=use_batch, pre_bn_relu=pre_bn_relu)
  np.testing.assert_allclose(f_logits, logits, rtol=1e-5, atol=1e-5)
  for layer in models.READOUT_LAYERS:
    np.testing.assert_allclose(f_feats[layer], feats[layer], rtol=1e-5, atol=1e-6)
  for name in ("bn1", "bn2", "bn3"):
    for k in ("mean", "var"):
      np.testing.assert_allclose(f_stats[name][k], stats[name][k], rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(logits).max()) > 1e-3  # not vacuous
