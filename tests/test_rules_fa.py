"""Feedback alignment: custom-VJP layers, the rule's gradients, fixed feedback kernels, the SGD optimiser."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from brainalign import models, optim, rules, train

SMALL = dict(conv_widths=(4, 8, 8), fc_width=16)


def fa_config(variant="standard", **kw):
  """The layout of brainalign/configs/common.py: shared keys, one optimiser block per variant (kw override that
  block)."""
  opt = dict(
    learning_rate=5e-4, momentum=0.9, weight_decay=1e-4, clip_norm=1.0, schedule="cosine_per_epoch", schedule_epochs=4
  )
  opt.update(kw)
  return ml_collections.ConfigDict(
    dict(variant=variant, conv_init="kaiming_normal", conv_bias=True, diagnostics=True, **{variant: opt})
  )


BP = ml_collections.ConfigDict(
  dict(
    learning_rate=1e-3,
    weight_decay=1e-4,
    clip_norm=1.0,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    schedule="cosine_per_epoch",
    schedule_epochs=4,
  )
)


def _setup(variant):
  model = models.CNN(conv_bias=True, conv_init="kaiming_normal", **SMALL)
  v = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  batch = {"image": jax.random.normal(jax.random.key(1), (6, 32, 32, 3)), "label": jnp.arange(6) % 10}
  return model, v, batch


def test_fa_with_feedback_equal_to_the_weights_gives_exactly_the_bp_gradients():
  """With B = W at every layer, FA changes nothing but the backward kernel, so it IS backprop (1e-6)."""
  model, v, batch = _setup("standard")
  fa = rules.create("fa", model, fa_config("standard"), steps_per_epoch=2)
  bp = rules.create("bp", model, BP, steps_per_epoch=2)
  state = {"feedback": {k: v["params"][k]["kernel"] for k in ("conv2", "conv3", "fc1", "fc2")}}
  key = jax.random.key(2)
  got, _, _, m = jax.jit(functools.partial(fa.update, diagnose=True))(v["params"], v["batch_stats"], state, batch, key)
  want, _, _, _ = jax.jit(bp.update)(v["params"], v["batch_stats"], None, batch, key)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), got, want)
  for layer in ("conv1", "conv2", "fc2"):
    assert float(m[f"angle_fa_vs_bp_{layer}"]) < 0.1
  for layer in ("conv2", "fc2"):
    assert float(m[f"angle_w_vs_b_{layer}"]) < 0.1


def test_two_layer_dense_error_sent_below_is_b_transpose_delta():
  """h = relu(x W1), y = fa_dense(h, W2, B2), L = sum(y * c): dL/dh = c B2ᵀ (not c W2ᵀ); dW2 = hᵀc exact;
  dW1 = xᵀ[(xW1 > 0) ⊙ c B2ᵀ] (NumPy by hand)."""
  rng = np.random.default_rng(0)
  x, w1, w2, b2, c = (rng.normal(size=s).astype(np.float32) for s in ((5, 4), (4, 6), (6, 3), (6, 3), (5, 3)))

  def loss(w1, w2, x):
    return jnp.sum(models.fa_dense(jax.nn.relu(x @ w1), w2, b2) * c)

  dw1, dw2, dx = jax.grad(loss, argnums=(0, 1, 2))(w1, w2, x)
  z = x @ w1
  delta_below = c @ b2.T  # [5, 6]: the error sent down through B2
  np.testing.assert_allclose(dw2, np.maximum(z, 0).T @ c, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(dw1, x.T @ ((z > 0) * delta_below), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(dx, ((z > 0) * delta_below) @ w1.T, rtol=1e-5, atol=1e-6)
  assert not np.allclose(dw1, x.T @ ((z > 0) * (c @ w2.T)), atol=1e-3)  # differs from backprop


@pytest.mark.parametrize("impl", ["xla", "im2col"])
def test_fa_conv_sends_the_error_down_through_b_per_position(impl):
  """fa_conv3x3: dL/dx[n,y,x,i] = Σ_{u,v,o} δ[n, y+1-u, x+1-v, o] B[u,v,i,o] (explicit loops, zero padding);
  dL/dW is the exact conv weight gradient."""
  rng = np.random.default_rng(1)
  x, w, b = rng.normal(size=(2, 4, 5, 3)), rng.normal(size=(3, 3, 3, 2)), rng.normal(size=(3, 3, 3, 2))
  delta = rng.normal(size=(2, 4, 5, 2))
  x, w, b, delta = (a.astype(np.float32) for a in (x, w, b, delta))
  f = lambda x, w: jnp.sum(models.fa_conv3x3(x, w, b, impl) * delta)
  dx, dw = jax.grad(f, argnums=(0, 1))(x, w)
  want_dx, want_dw = np.zeros_like(x), np.zeros_like(w)
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  for n in range(2):
    for yy in range(4):
      for xx in range(5):
        for u in range(3):
          for v in range(3):
            want_dw[u, v] += np.outer(xp[n, yy + u, xx + v], delta[n, yy, xx])
            sy, sx = yy + 1 - u, xx + 1 - v
            if 0 <= sy < 4 and 0 <= sx < 5:
              want_dx[n, yy, xx] += b[u, v] @ delta[n, sy, sx]
  np.testing.assert_allclose(dx, want_dx, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(dw, want_dw, rtol=1e-4, atol=1e-5)


def test_reference_variant_is_exact_above_conv3_and_feedback_below():
  """reference: FC layers and conv3 get the true BP gradient (the error entering conv3 uses W_FC1ᵀ);
  conv1/conv2 do not (their error came through B3, B2); standard: conv3 differs too (B at fc1)."""
  model, v, batch = _setup("reference")
  key = jax.random.key(3)
  bp = rules.create("bp", model, BP, steps_per_epoch=2)
  want, _, _, _ = bp.update(v["params"], v["batch_stats"], None, batch, key)
  for variant, exact in (("reference", ("conv3", "fc1", "fc2")), ("standard", ("fc2",))):
    fa = rules.create("fa", model, fa_config(variant), steps_per_epoch=2)
    st = fa.init(v["params"], jax.random.key(4))
    assert set(st["feedback"]) == ({"conv2", "conv3"} if variant == "reference" else {"conv2", "conv3", "fc1", "fc2"})
    got, _, _, _ = fa.update(v["params"], v["batch_stats"], st, batch, key)
    for layer in ("conv1", "conv2", "conv3", "fc1", "fc2"):
      same = np.allclose(got[layer]["kernel"], want[layer]["kernel"], rtol=1e-5, atol=1e-7)
      assert same == (layer in exact), (variant, layer)
    np.testing.assert_allclose(
      got["conv3"]["bias"] if variant == "reference" else 0.0,
      want["conv3"]["bias"] if variant == "reference" else 0.0,
      rtol=1e-5,
      atol=1e-7,
    )


def test_feedback_kernels_are_xavier_normal_and_never_change_during_training():
  """B ~ N(0, 2/(9 Cin + 9 Cout)) (docs/methods.md §3.2); after several optimiser steps params moved, B did not."""
  model = models.CNN(conv_bias=True, conv_init="kaiming_normal", conv_widths=(32, 64, 8), fc_width=16)
  rule = rules.create("fa", model, fa_config("standard"), steps_per_epoch=2)
  keys = jnp.asarray(train.seed_key_data([0]))
  state = jax.vmap(functools.partial(train.create_train_state, model=model, rule=rule, image_shape=(32, 32, 3)))(keys)
  b2 = np.asarray(state.rule_state["feedback"]["conv2"])
  np.testing.assert_allclose(b2.std(), np.sqrt(2 / (9 * 32 + 9 * 64)), rtol=0.05)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 16).astype(np.int32))
  make_step = functools.partial(
    train.make_train_step,
    model,
    rule,
    batch_size=8,
    steps_per_epoch=2,
    mean=np.full(3, 0.5, np.float32),
    std=np.full(3, 0.25, np.float32),
    pad=4,
    flip=True,
  )
  run = train.make_epoch_runner(make_step(), steps_per_epoch=2, driver="python", last_step=make_step(diagnose=True))
  before = jax.tree.map(np.asarray, state)
  state, metrics = run(state, images, labels)
  state, metrics = run(state, images, labels)
  jax.tree.map(np.testing.assert_array_equal, before.rule_state, jax.tree.map(np.asarray, state.rule_state))
  assert not np.allclose(before.params["conv1"]["kernel"], state.params["conv1"]["kernel"])
  assert {"loss", "accuracy", "angle_fa_vs_bp_conv1", "angle_w_vs_b_fc1"} <= set(metrics)
  assert all(np.isfinite(np.asarray(m)).all() for m in metrics.values())


def test_sgd_optimizer_matches_pytorch_sgd_with_momentum_l2_and_clipping():
  """optim.torch_sgd = clip_grad_norm_ -> SGD(momentum 0.9, dampening 0, weight_decay) (NumPy transcription)."""
  rng = np.random.default_rng(0)
  p0 = rng.normal(size=(3, 4)).astype(np.float32)
  grads = [(rng.normal(size=(3, 4)) * 3).astype(np.float32) for _ in range(4)]
  c = fa_config()
  tx = optim.torch_sgd(c.standard, 2)
  p, st = jnp.asarray(p0), tx.init(jnp.asarray(p0))
  for g in grads:
    u, st = tx.update(jnp.asarray(g), st, p)
    p = optax.apply_updates(p, u)
  want, buf = p0.astype(np.float64), np.zeros((3, 4))
  for t, g in enumerate(grads):
    g = g * min(1.0, 1.0 / (np.linalg.norm(g) + 1e-6)) + 1e-4 * want
    buf = 0.9 * buf + g
    want = want - 5e-4 * 0.5 * (1 + np.cos(np.pi * (t // 2) / 4)) * buf
  np.testing.assert_allclose(p, want, rtol=1e-5, atol=1e-7)


def test_dfa_sends_the_projected_output_error_straight_to_each_hidden_layer():
  """dfa: each hidden layer's parameter gradient equals the gradient of Σ sg(e B_l) · h_l (h_l its output,
  broadcast over space) w.r.t. that layer's own parameters, with e = ∂CE/∂logits; FC2 gets the exact gradient."""
  model, v, batch = _setup("dfa")
  params, stats = v["params"], v["batch_stats"]
  key = jax.random.key(5)
  rule = rules.create("fa", model, fa_config("dfa"), steps_per_epoch=2)
  st = rule.init(params, jax.random.key(6))
  assert {k: b.shape for k, b in st["feedback"].items()} == {
    "conv1": (10, 4),
    "conv2": (10, 8),
    "conv3": (10, 8),
    "fc1": (10, 16),
  }
  got, _, _, _ = rule.update(params, stats, st, batch, key)
  bp = rules.create("bp", model, BP, steps_per_epoch=2)
  want_bp, _, _, _ = bp.update(params, stats, None, batch, key)

  def forward(p):
    (logits, feats), _ = model.apply(
      {"params": p, "batch_stats": stats}, batch["image"], train=True, rngs={"dropout": key}, mutable=["batch_stats"]
    )
    return logits, feats

  logits, _ = forward(params)
  e = jax.nn.softmax(logits) - jax.nn.one_hot(batch["label"], 10)
  e = e / batch["image"].shape[0]
  positions = {"conv1": 16 * 16, "conv2": 8 * 8, "conv3": 4 * 4, "fc1": 1}
  for layer, own in (
    ("conv1", ("conv1", "bn1")),
    ("conv2", ("conv2", "bn2")),
    ("conv3", ("conv3", "bn3")),
    ("fc1", ("fc1",)),
  ):
    signal = e @ st["feedback"][layer]
    want = jax.grad(lambda p, layer=layer, signal=signal: jnp.sum(forward(p)[1][layer] * signal) * positions[layer])(
      params
    )
    assert np.abs(np.asarray(want[layer]["kernel"])).max() > 1e-3  # the comparison is not vacuous
    for k in own:  # atol: a conv bias followed by BN has gradient 0 up to float noise
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), got[k], want[k])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got["fc2"], want_bp["fc2"])
