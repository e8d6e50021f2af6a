"""STDP: the sign of both variants, the conv update against an explicit per-position sum, bounds, the rule."""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from brainalign import models, rules, train
from brainalign.rules import stdp

REFERENCE = dict(
  learning_rate=5e-4,
  a_plus=0.003,
  a_minus=0.003,
  tau_plus=20.0,
  tau_minus=20.0,
  time_steps=10,
  delta_clip=0.002,
  w_min=-1.0,
  w_max=1.0,
  readout_learning_rate=1e-3,
)
STANDARD = dict(
  learning_rate=1.0,
  a_plus=0.004,
  a_minus=0.003,
  tau=20.0,
  time_steps=10,
  max_rate=0.3,
  threshold=0.5,
  k_wta=0,
  batch_size=4,
  w_min=-1.0,
  w_max=1.0,
  readout_learning_rate=1e-3,
)


def stdp_config(variant, **kw):
  ref, std = dict(REFERENCE), dict(STANDARD)
  (ref if variant == "reference" else std).update(kw)
  return ml_collections.ConfigDict(dict(variant=variant, reference=ref, standard=std))


def _pair(t_pre, t_post, steps=6, shape=(1, 3, 3)):
  """One presynaptic spike (channel 0, centre) at t_pre and one postsynaptic spike (channel 0, centre) at t_post."""
  pre, post = np.zeros((steps,) + shape + (1,), np.float32), np.zeros((steps,) + shape + (1,), np.float32)
  pre[t_pre, 0, 1, 1, 0] = 1
  post[t_post, 0, 1, 1, 0] = 1
  return jnp.asarray(pre), jnp.asarray(post)


def test_standard_pre_before_post_potentiates_and_post_before_pre_depresses():
  """Centre tap of a 1->1 kernel: pre at t=1, post at t=3 -> ΔW > 0; post at 1, pre at 3 -> ΔW < 0; with the
  exact trace values A₊(1−w)e^{−2/τ}/9 and −A₋(w+1)e^{−2/τ}/9 (9 positions)."""
  w = jnp.full((3, 3, 1, 1), 0.2)
  kw = dict(a_plus=0.004, a_minus=0.003, tau=20.0, w_min=-1.0, w_max=1.0)
  ltp = stdp.stdp_conv_update(*_pair(1, 3), w, **kw)[1, 1, 0, 0]
  ltd = stdp.stdp_conv_update(*_pair(3, 1), w, **kw)[1, 1, 0, 0]
  np.testing.assert_allclose(ltp, 0.004 * 0.8 * math.exp(-2 / 20) / 9, rtol=1e-5)
  np.testing.assert_allclose(ltd, -0.003 * 1.2 * math.exp(-2 / 20) / 9, rtol=1e-5)


def test_reference_sign_is_the_implemented_opposite():
  """The reference formula: post after pre (Δt > 0) gives A(e^{−Δt/20} − 1) < 0 (depression), post before pre
  gives A(1 − e^{Δt/20}) > 0 (docs/methods.md §6.2); the largest per-step change 5e-4·A(1 − e^{−11/20}) ≈ 6.35e-7."""
  kw = dict(a_plus=0.003, a_minus=0.003, tau_plus=20.0, tau_minus=20.0, clip=0.002)
  pre_first = stdp.reference_delta(jnp.array([[1.0]]), jnp.array([[4.0]]), **kw)
  post_first = stdp.reference_delta(jnp.array([[4.0]]), jnp.array([[1.0]]), **kw)
  np.testing.assert_allclose(pre_first, 0.003 * (math.exp(-3 / 20) - 1), rtol=1e-5)
  np.testing.assert_allclose(post_first, 0.003 * (1 - math.exp(-3 / 20)), rtol=1e-5)
  worst = stdp.reference_delta(jnp.array([[0.0]]), jnp.array([[11.0]]), **kw)
  np.testing.assert_allclose(5e-4 * abs(float(worst[0, 0])), 6.35e-7, rtol=2e-3)


def test_conv_update_equals_an_explicit_per_position_sum():
  """ΔW from the correlation form equals NumPy loops over time, images, positions and taps with explicit traces."""
  rng = np.random.default_rng(0)
  T, B, H, W, I, J = 4, 2, 4, 5, 2, 3
  pre = (rng.random((T, B, H, W, I)) < 0.3).astype(np.float32)
  post = (rng.random((T, B, H, W, J)) < 0.3).astype(np.float32)
  w = rng.uniform(-0.5, 0.5, (3, 3, I, J)).astype(np.float32)
  got = stdp.stdp_conv_update(
    jnp.asarray(pre), jnp.asarray(post), jnp.asarray(w), a_plus=0.01, a_minus=0.02, tau=5.0, w_min=-1.0, w_max=1.0
  )
  d = math.exp(-1 / 5)
  xpre, xpost = np.zeros_like(pre), np.zeros_like(post)
  for t in range(T):
    xpre[t] = (d * xpre[t - 1] if t else 0) + pre[t]
    xpost[t] = (d * xpost[t - 1] if t else 0) + post[t]
  ltp, ltd = np.zeros((3, 3, I, J)), np.zeros((3, 3, I, J))
  for t in range(T):
    for n in range(B):
      for y in range(H):
        for x in range(W):
          for u in range(3):
            for v in range(3):
              yy, xx = y + u - 1, x + v - 1
              if 0 <= yy < H and 0 <= xx < W:
                ltp[u, v] += np.outer(xpre[t, n, yy, xx], post[t, n, y, x])
                ltd[u, v] += np.outer(pre[t, n, yy, xx], xpost[t, n, y, x])
  want = (0.01 * (1 - w) * ltp - 0.02 * (w + 1) * ltd) / (B * H * W)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-8)


def test_integrate_and_fire_and_k_winner_take_all():
  """IF: v accumulates, fires at threshold and resets; k-WTA keeps the k most depolarised channels."""
  cur = jnp.asarray(np.array([[[0.6, 0.3, 0.9]], [[0.6, 0.3, 0.2]], [[0.0, 0.6, 0.0]]], np.float32))  # [T=3, 1, 3]
  s = np.asarray(stdp.integrate_and_fire(cur, threshold=1.0, k_wta=0))
  np.testing.assert_array_equal(s[:, 0], [[0, 0, 0], [1, 0, 1], [0, 1, 0]])
  s = np.asarray(stdp.integrate_and_fire(cur, threshold=1.0, k_wta=1))
  np.testing.assert_array_equal(s[:, 0], [[0, 0, 0], [1, 0, 0], [0, 1, 0]])  # t=1: 1.2 beats 1.1; t=2: 1.2 > 1.1


@pytest.mark.parametrize("variant", ["reference", "standard"])
def test_stdp_rule_trains_in_the_vmapped_step_and_keeps_weights_in_bounds(variant):
  """Both variants in the library's seed-vmapped step: conv kernels change only by STDP (reference: one value per
  channel pair at every tap, |Δ| ≤ 6.35e-7 per step), BN affine and FC by Adam, kernels within [w_min, w_max]
  (here narrow bounds and a large rate, so they bind in the standard variant)."""
  model = models.CNN(conv_widths=(4, 8, 8), fc_width=16, conv_init="kaiming_normal", pre_bn_relu=True)
  kw = {} if variant == "reference" else dict(learning_rate=50.0, w_min=-0.3, w_max=0.3)
  rule = rules.create("stdp", model, stdp_config(variant, **kw), steps_per_epoch=2)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 16).astype(np.int32))
  keys = jnp.asarray(train.seed_key_data([0, 1]))
  state = jax.vmap(functools.partial(train.create_train_state, model=model, rule=rule, image_shape=(32, 32, 3)))(keys)
  before = jax.tree.map(np.asarray, state)
  step = train.make_train_step(
    model,
    rule,
    batch_size=8,
    steps_per_epoch=2,
    mean=np.full(3, 0.5, np.float32),
    std=np.full(3, 0.25, np.float32),
    pad=4,
    flip=True,
  )
  new, metrics = train.make_epoch_runner(step, steps_per_epoch=2, driver="python")(state, images, labels)
  assert np.all(np.isfinite(metrics["loss"]))
  for k in ("bn1", "fc2"):
    assert not np.allclose(before.params[k]["bias"], new.params[k]["bias"])
  for i in (1, 2, 3):
    w0, w1 = before.params[f"conv{i}"]["kernel"], np.asarray(new.params[f"conv{i}"]["kernel"])
    change = w1 - np.clip(w0, -1, 1) if variant == "reference" else w1 - w0
    assert np.abs(change).max() > 0
    if variant == "reference":
      assert np.abs(change).max() <= 2 * 6.36e-7 + 1e-7  # 2 steps; float32 rounding
      np.testing.assert_allclose(change, np.broadcast_to(change[:, :1, :1], change.shape), atol=2e-7)
    else:
      assert w1.min() >= -0.3 and w1.max() <= 0.3
      assert float(metrics[f"post_rate_conv{i}"].min()) >= 0


def test_stdp_needs_the_stdp_block_order():
  """The STDP network is conv -> ReLU -> BN -> ReLU -> pool; a model without it is rejected with the fix."""
  with pytest.raises(ValueError, match="pre_bn_relu"):
    rules.create("stdp", models.CNN(conv_widths=(4, 8, 8), fc_width=16), stdp_config("standard"), steps_per_epoch=1)
