"""The CNN: architecture, readouts, initialisation and the two convolution implementations."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brainalign import models


def _init(model, size=32):
  x = jnp.zeros((2, size, size, 3))
  return model.init(jax.random.key(0), x, train=False)


def test_parameter_shapes_match_the_study():
  """Three bias-free 3x3 convs 3->32->64->128, BN on each, FC 2048->512 and 512->10 (docs/methods.md §3.1)."""
  v = _init(models.CNN())
  shapes = jax.tree.map(lambda a: a.shape, v["params"])
  assert shapes["conv1"] == {"kernel": (3, 3, 3, 32)}
  assert shapes["conv2"] == {"kernel": (3, 3, 32, 64)}
  assert shapes["conv3"] == {"kernel": (3, 3, 64, 128)}
  assert shapes["fc1"] == {"kernel": (2048, 512), "bias": (512,)}
  assert shapes["fc2"] == {"kernel": (512, 10), "bias": (10,)}
  n_params = sum(a.size for a in jax.tree.leaves(v["params"]))
  # hand count: convs 864 + 18432 + 73728, BN 2*(32+64+128), fc1 2048*512+512, fc2 5130
  assert n_params == 864 + 18432 + 73728 + 2 * 224 + 2048 * 512 + 512 + 5130


@pytest.mark.parametrize("size", [32, 64, 224])
def test_readouts_have_the_study_dimensions_at_every_resolution(size):
  """conv1/2/3 readouts are channel vectors (32/64/128), fc1 is 512-d, at any evaluation resolution."""
  model = models.CNN()
  v = _init(model, 32)
  x = jax.random.normal(jax.random.key(1), (2, size, size, 3))
  logits, feats = model.apply(v, x, train=False)
  assert logits.shape == (2, 10)
  assert {k: f.shape for k, f in feats.items()} == {
    "conv1": (2, 32),
    "conv2": (2, 64),
    "conv3": (2, 128),
    "fc1": (2, 512),
  }
  assert float(feats["fc1"].min()) >= 0.0  # post-ReLU


def test_conv_readout_is_the_spatial_mean_of_the_pooled_block_output():
  """conv1 readout = mean over space of maxpool(relu(BN(conv(x)))), computed here with flax/lax primitives."""
  model = models.CNN()
  v = _init(model)
  x = jax.random.normal(jax.random.key(2), (3, 32, 32, 3))
  _, feats = model.apply(v, x, train=False)
  k = v["params"]["conv1"]["kernel"]
  z = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  bs, p = v["batch_stats"]["bn1"], v["params"]["bn1"]
  z = (z - bs["mean"]) / jnp.sqrt(bs["var"] + 1e-5) * p["scale"] + p["bias"]
  want = nn.max_pool(jax.nn.relu(z), (2, 2), strides=(2, 2)).mean(axis=(1, 2))
  np.testing.assert_allclose(feats["conv1"], want, rtol=1e-5, atol=1e-5)


def test_im2col_convolution_equals_xla_convolution():
  """The 9-shifted-slices + matmul form computes the same 3x3 SAME convolution as lax (forward and gradient)."""
  kx, kw = jax.random.split(jax.random.key(3))
  x, w = jax.random.normal(kx, (2, 9, 7, 5)), jax.random.normal(kw, (3, 3, 5, 4))
  np.testing.assert_allclose(models.conv3x3(x, w, "im2col"), models.conv3x3(x, w, "xla"), rtol=1e-5, atol=1e-5)
  g = lambda impl: jax.grad(lambda x, w: jnp.sum(jnp.sin(models.conv3x3(x, w, impl))), argnums=(0, 1))(x, w)
  for a, b in zip(g("im2col"), g("xla")):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_max_pool_equals_flax_max_pool():
  """The reshape-based 2x2 max-pool equals flax's reduce_window max-pool."""
  x = jax.random.normal(jax.random.key(4), (2, 8, 6, 3))
  np.testing.assert_array_equal(models.max_pool_2x2(x), nn.max_pool(x, (2, 2), strides=(2, 2)))


def test_adaptive_pool_follows_pytorch_bins():
  """AdaptiveAvgPool2d bins are [floor(i*H/o), ceil((i+1)*H/o)): for H=5, o=4 they overlap (hand-computed)."""
  m = models._adaptive_pool_matrix(5, 4)
  want = np.array([[0.5, 0.5, 0, 0, 0], [0, 0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5, 0], [0, 0, 0, 0.5, 0.5]], np.float32)
  np.testing.assert_allclose(m, want)
  x = jax.random.normal(jax.random.key(5), (1, 28, 28, 2))  # 224 px -> conv3 map 28x28 -> 7x7 bins
  want = np.asarray(x).reshape(1, 4, 7, 4, 7, 2).mean(axis=(2, 4))
  np.testing.assert_allclose(models.adaptive_avg_pool(x, 4), want, rtol=1e-5, atol=1e-6)


def test_torch_default_init_is_uniform_with_bound_one_over_sqrt_fan_in():
  """PyTorch's default conv/linear init: U(±1/sqrt(fan_in)); fan_in of conv2 is 9*32 = 288."""
  w = np.asarray(_init(models.CNN())["params"]["conv2"]["kernel"])
  bound = 1 / np.sqrt(288)
  assert np.abs(w).max() <= bound
  np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.05)


def test_kaiming_normal_init_has_std_sqrt_two_over_fan_in():
  """kaiming_normal_ (the reference FA/STDP convs): std sqrt(2/fan_in) = 0.0833 for conv2 (docs/methods.md §3.2)."""
  w = np.asarray(_init(models.CNN(conv_init="kaiming_normal"))["params"]["conv2"]["kernel"])
  np.testing.assert_allclose(w.std(), np.sqrt(2 / 288), rtol=0.05)


def test_batchnorm_uses_pytorch_momentum_and_epsilon():
  """One training-mode pass moves the running mean 10% of the way to the batch mean (PyTorch momentum 0.1)."""
  model = models.CNN()
  v = _init(model)
  x = jax.random.normal(jax.random.key(6), (4, 32, 32, 3)) + 3.0
  (_, _), upd = model.apply(v, x, train=True, rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"])
  z = models.conv3x3(x, v["params"]["conv1"]["kernel"], "xla")
  np.testing.assert_allclose(
    upd["batch_stats"]["bn1"]["mean"], 0.1 * np.asarray(z).mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5
  )
