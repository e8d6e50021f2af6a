"""Feature extraction: BN running statistics make an image's features independent of its batch mates."""

import jax
import jax.numpy as jnp
import numpy as np

from brainalign import features, models

SMALL = dict(conv_widths=(4, 8, 8), fc_width=16)


def _trained_like_variables(model):
  """Variables with non-trivial running statistics (as after training), for two seeds."""

  def one(k):
    v = model.init(k, jnp.zeros((1, 32, 32, 3)), train=False)
    stats = jax.tree.map(lambda a: a + jax.random.uniform(k, a.shape, minval=0.2, maxval=0.8), v["batch_stats"])
    return v["params"], stats

  return jax.vmap(one)(jax.random.split(jax.random.key(0), 2))


def _target_in_two_batches(seed, n_mates):
  """One target image followed by n_mates different images in batch a, and by differently scaled ones in b."""
  rng = np.random.default_rng(seed)
  target = rng.normal(size=(1, 32, 32, 3)).astype(np.float32)
  a = np.concatenate([target, rng.normal(size=(n_mates, 32, 32, 3)).astype(np.float32)])
  b = np.concatenate([target, 3 + 2 * rng.normal(size=(n_mates, 32, 32, 3)).astype(np.float32)])
  return target, a, b


def test_running_mode_features_do_not_depend_on_batch_mates():
  """An image's features are identical whether it shares its batch with set A or set B (bn_mode='running')."""
  model = models.CNN(**SMALL)
  params, stats = _trained_like_variables(model)
  target, a, b = _target_in_two_batches(0, 5)
  extract = features.make_extractor(model, bn_mode="running", batch_size=4)
  fa, fb = extract(params, stats, a), extract(params, stats, b)
  for layer in models.READOUT_LAYERS:
    assert fa[layer].shape[:2] == (2, 6)
    np.testing.assert_allclose(fa[layer][:, 0], fb[layer][:, 0], rtol=1e-5, atol=1e-6)
  # chunking is invisible: one image alone gives the same features
  alone = extract(params, stats, target)
  np.testing.assert_allclose(alone["fc1"][:, 0], fa["fc1"][:, 0], rtol=1e-5, atol=1e-6)


def test_batch_mode_reproduces_the_defect_batch_mates_change_features():
  """With bn_mode='batch' (the reference defect) the same image gets different features in different batches,
  and a batch's conv1 readout equals a hand-written batch-statistics BN (biased variance)."""
  model = models.CNN(**SMALL)
  params, stats = _trained_like_variables(model)
  target, a, b = _target_in_two_batches(1, 3)
  extract = features.make_extractor(model, bn_mode="batch", batch_size=4)
  fa, fb = extract(params, stats, a), extract(params, stats, b)
  assert np.abs(fa["conv1"][:, 0] - fb["conv1"][:, 0]).max() > 1e-3
  k = np.asarray(params["conv1"]["kernel"][0])
  z = np.asarray(models.conv3x3(jnp.asarray(a), jnp.asarray(k), "xla"))
  z = (z - z.mean(axis=(0, 1, 2))) / np.sqrt(z.var(axis=(0, 1, 2)) + 1e-5)
  z = z * np.asarray(params["bn1"]["scale"][0]) + np.asarray(params["bn1"]["bias"][0])
  want = np.asarray(models.max_pool_2x2(jnp.asarray(np.maximum(z, 0)))).mean(axis=(1, 2))
  np.testing.assert_allclose(fa["conv1"][0], want, rtol=1e-4, atol=1e-5)
