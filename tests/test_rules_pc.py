"""Predictive coding: the reference algorithm against a NumPy transcription of docs/methods.md §4.3(b), and the
standard variant's energy descent, approach to backprop and locality."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from brainalign import features, models, rules, train
from brainalign.rules import predictive_coding as pc

REFERENCE = dict(
  inference_steps=10,
  inference_rate=0.02,
  local_learning_rate=1e-4,
  error_clip=0.5,
  update_clip=0.01,
  readout_learning_rate=1e-3,
  prediction_bias=True,
)
STANDARD = dict(
  inference_steps=20,
  inference_rate=0.1,
  output_weight=1.0,
  learning_rate=1e-3,
  weight_decay=0.0,
  clip_norm=1.0,
  b1=0.9,
  b2=0.999,
  eps=1e-8,
  schedule="constant",
  schedule_epochs=1,
)


def pc_config(variant, diagnostics=True, **kw):
  ref, std = dict(REFERENCE), dict(STANDARD)
  (ref if variant == "reference" else std).update(kw)
  return ml_collections.ConfigDict(dict(variant=variant, diagnostics=diagnostics, reference=ref, standard=std))


# ------------------------------------------------------------------ NumPy transcription of the reference


def np_conv(x, w):
  """3x3 conv, stride 1, zero pad 1 (explicit taps). x [N,H,W,I], w [3,3,I,O]."""
  n, h, wd, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(xp[:, u : u + h, v : v + wd] @ w[u, v] for u in range(3) for v in range(3))


def np_conv_transpose(y, k):
  """PyTorch ConvTranspose2d(stride 1, pad 1): out[n,a,b,c] = Σ_{u,v,o} y[n,a+1-u,b+1-v,o] k[u,v,c,o]."""
  n, h, w, _ = y.shape
  out = np.zeros((n, h, w, k.shape[2]))
  for a in range(h):
    for b in range(w):
      for u in range(3):
        for v in range(3):
          sa, sb = a + 1 - u, b + 1 - v
          if 0 <= sa < h and 0 <= sb < w:
            out[:, a, b] += y[:, sa, sb] @ k[u, v].T
  return out


def np_block(x, w, scale, bias, stats):
  z = np_conv(x, w)
  mean, var = z.mean((0, 1, 2)), z.var((0, 1, 2))
  y = np.maximum((z - mean) / np.sqrt(var + 1e-5) * scale + bias, 0)
  n, h, wd, c = y.shape
  new = {"mean": 0.9 * stats["mean"] + 0.1 * mean, "var": 0.9 * stats["var"] + 0.1 * var}
  return y.reshape(n, h // 2, 2, wd // 2, 2, c).max(axis=(2, 4)), new


def np_reference_step(p, stats, pred, x, *, steps=10, rate=0.02):
  """docs/methods.md §4.3(b) in NumPy: returns (ΔW1, ΔW2, new stats, r3)."""
  p, stats, pred = jax.tree.map(lambda a: np.asarray(a, np.float64), (p, stats, pred))
  relu, up = lambda a: np.maximum(a, 0), lambda a: a.repeat(2, 1).repeat(2, 2)
  avg = lambda a: a.reshape(a.shape[0], a.shape[1] // 2, 2, a.shape[2] // 2, 2, a.shape[3]).mean(axis=(2, 4))
  a, st = [], dict(stats)
  h = x
  for i in (1, 2, 3):
    h, st[f"bn{i}"] = np_block(h, p[f"conv{i}"]["kernel"], p[f"bn{i}"]["scale"], p[f"bn{i}"]["bias"], st[f"bn{i}"])
    a.append(h)
  r1, r2, r3 = a
  for _ in range(steps):
    p1 = np.tanh(up(np_conv_transpose(r2, pred["P2"]["kernel"]) + pred["P2"]["bias"]))
    p2 = np.tanh(up(np_conv_transpose(r3, pred["P3"]["kernel"]) + pred["P3"]["bias"]))
    e1, e2 = r1 - p1, r2 - p2
    r1, r2, r3 = (
      relu(r1 - rate * e1),
      relu(r2 + rate * (-e2 + avg(np_conv(e1, p["conv2"]["kernel"])))),
      relu(r3 + rate * avg(np_conv(e2, p["conv3"]["kernel"]))),
    )
  # second feed-forward pass: the same a1, a2 (same weights, same batch) but the running stats move again
  a1, st["bn1"] = np_block(x, p["conv1"]["kernel"], p["bn1"]["scale"], p["bn1"]["bias"], st["bn1"])
  a2, st["bn2"] = np_block(a1, p["conv2"]["kernel"], p["bn2"]["scale"], p["bn2"]["bias"], st["bn2"])
  e1, e2 = np.clip(r1 - a1, -0.5, 0.5), np.clip(r2 - a2, -0.5, 0.5)
  m = lambda v: v.mean(axis=(0, 1, 2))
  dw1 = np.clip(np.outer(m(x), m(e1)), -0.01, 0.01)
  dw2 = np.clip(np.outer(m(r1), m(e2)), -0.01, 0.01)
  return dw1, dw2, st, r3


@pytest.fixture(scope="module")
def tiny_reference():
  model = models.CNN(conv_widths=(2, 3, 4), fc_width=5)
  v = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)), train=False)
  params = jax.tree.map(lambda a: a * 3.0, v["params"])  # larger weights: errors big enough to clip
  rule = rules.create("pc", model, pc_config("reference"), steps_per_epoch=1)
  state = rule.init(params, jax.random.key(1))
  x = np.asarray(jax.random.normal(jax.random.key(2), (4, 16, 16, 3))) * 2.0 + 1.5
  batch = {"image": jnp.asarray(x, jnp.float32), "label": jnp.arange(4)}
  out = jax.jit(functools.partial(rule.update, diagnose=True))(
    params, v["batch_stats"], state, batch, jax.random.key(3)
  )
  return model, rule, params, v["batch_stats"], state, x, out


def test_reference_update_equals_the_numpy_transcription(tiny_reference):
  """conv1/conv2 updates = −clip(m(pre) ⊗ m(clip(r − a)), ±0.01) at every tap after the 10-step inference loop;
  W3 and BN affine get zero; bn1/bn2 running statistics move twice, bn3 once (NumPy, float64)."""
  model, rule, params, stats, state, x, (updates, new_stats, new_state, metrics) = tiny_reference
  dw1, dw2, want_stats, _ = np_reference_step(params, stats, state, x)
  for name, dw in (("conv1", dw1), ("conv2", dw2)):
    got = np.asarray(updates[name]["kernel"])
    np.testing.assert_allclose(got, -np.broadcast_to(dw, (3, 3) + dw.shape), rtol=1e-4, atol=1e-7)
    assert np.all(got == got[0, 0])  # identical at every tap
    assert np.linalg.matrix_rank(got[0, 0]) <= 1 or np.abs(got[0, 0]).max() == 0.01
  assert np.isclose(np.abs(dw1).max(), 0.01) or np.isclose(np.abs(dw2).max(), 0.01), "clip never bound"
  for name in ("conv3", "bn1", "bn2", "bn3"):
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates[name])), name
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), dict(new_stats), want_stats)
  jax.tree.map(np.testing.assert_array_equal, new_state, state)
  assert set(metrics) >= {"loss", "accuracy", "energy_step00", "energy_step10", "cos_pc_vs_bp_conv1"}


def test_reference_rank_one_structure_when_the_clip_does_not_bind():
  """Unclipped, the per-tap update is exactly the outer product of two channel-mean vectors (rank 1)."""
  err = jax.random.normal(jax.random.key(0), (2, 4, 4, 5)) * 0.01
  pre = jax.random.normal(jax.random.key(1), (2, 8, 8, 3)) * 0.01
  got = np.asarray(pc.channel_mean_outer(err, pre, clip=0.01))
  want = np.outer(np.asarray(pre).mean((0, 1, 2)), np.asarray(err).mean((0, 1, 2)))
  np.testing.assert_allclose(got, np.broadcast_to(want, (3, 3, 3, 5)), rtol=1e-5, atol=1e-12)
  assert np.linalg.matrix_rank(got[1, 1], tol=1e-12) == 1


def test_reference_optimizer_trains_w1_w2_and_the_readout_only(tiny_reference):
  """After one step: W1 += 1e-4 ΔW1, W2 += 1e-4 ΔW2 exactly; W3, BN affine unchanged; FC layers moved by Adam."""
  model, rule, params, stats, state, x, (updates, _, _, _) = tiny_reference
  opt_state = rule.optimizer.init(params)
  steps, _ = rule.optimizer.update(updates, opt_state, params)
  for name in ("conv1", "conv2"):
    np.testing.assert_allclose(steps[name]["kernel"], -1e-4 * updates[name]["kernel"], rtol=1e-6)
  for name in ("conv3", "bn1", "bn2", "bn3"):
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(steps[name]))
  assert np.abs(np.asarray(steps["fc1"]["kernel"])).max() > 0 and np.abs(np.asarray(steps["fc2"]["bias"])).max() > 0


def test_reference_features_and_logits_come_from_the_inference_loop(tiny_reference):
  """features = spatial means of the inferred r1..r3 and FC1 on r3 (running-stat BN), not the forward pass."""
  model, rule, params, stats, state, x, _ = tiny_reference
  variables = {"params": params, "batch_stats": stats, "rule_state": state}
  f = rule.features(variables, jnp.asarray(x, jnp.float32), False)
  plain = model.apply({"params": params, "batch_stats": stats}, jnp.asarray(x, jnp.float32), train=False)[1]
  acts, _ = pc._feed_forward(params, stats, jnp.asarray(x, jnp.float32), impl="xla", use_batch=False)
  r, _ = pc.reference_inference(params, state, acts, impl="xla", steps=10, rate=0.02)
  np.testing.assert_allclose(f["conv2"], r[1].mean((1, 2)), rtol=1e-6)
  assert not np.allclose(f["conv3"], plain["conv3"], atol=1e-4)
  logits = rule.logits(variables, jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(logits, models.readout_head(params, r[2])[0], rtol=1e-5, atol=1e-6)
  # the features seam of the extractor passes the rule state through, for every seed
  extract = features.make_extractor(model, bn_mode="running", batch_size=4, rule_features=rule.features)
  add = lambda t: jax.tree.map(lambda a: a[None], t)
  out = extract(add(params), add(stats), x.astype(np.float32), add(state))
  np.testing.assert_allclose(out["fc1"][0], f["fc1"], rtol=1e-5, atol=1e-6)


def test_reference_energy_falls_during_inference(tiny_reference):
  """Σ‖e1‖² + Σ‖e2‖² falls at every one of the 10 reference inference steps on this batch."""
  *_, (_, _, _, metrics) = tiny_reference
  e = [float(metrics[f"energy_step{t:02d}"]) for t in range(11)]
  assert all(b < a for a, b in zip(e, e[1:])), e
  assert float(metrics["energy_fall_fraction"]) == 1.0


# ------------------------------------------------------------------ standard variant


def _standard_setup(n=8):
  model = models.CNN(conv_widths=(4, 8, 8), fc_width=16)
  v = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  image = jax.random.normal(jax.random.key(1), (n, 32, 32, 3))
  labels = jnp.arange(n) % 10
  return model, v, image, labels


def test_standard_energy_falls_monotonically_at_a_small_step_size():
  """Gradient descent on F over the value nodes with a small step: F falls at every step (β = 1, 30 steps)."""
  model, v, image, labels = _standard_setup()
  layers = pc._standard_layers(model)
  xs, _, _ = pc.standard_feed_forward(v["params"], v["batch_stats"], image, layers=layers)
  _, energy = jax.jit(functools.partial(pc.standard_inference, layers=layers, steps=30, rate=0.05, output_weight=1.0))(
    v["params"], v["batch_stats"], xs, image, labels
  )
  energy = np.asarray(energy)
  assert np.all(np.diff(energy) < 0), energy
  assert energy[-1] < 0.97 * energy[0]


def test_standard_updates_approach_bp_gradients_with_weak_clamping_and_many_steps():
  """With β = 1e-3 and 300 inference steps, (1/β) ∂F/∂θ ≈ ∂CE/∂θ of the forward network: cosine > 0.99
  for every layer (the known PC ≈ BP result, Whittington & Bogacz 2017)."""
  model, v, image, labels = _standard_setup()
  rule = rules.create(
    "pc", model, pc_config("standard", output_weight=1e-3, inference_steps=300, inference_rate=0.1), steps_per_epoch=1
  )
  _, _, _, m = jax.jit(functools.partial(rule.update, diagnose=True))(
    v["params"], v["batch_stats"], rule.init(v["params"], None), {"image": image, "label": labels}, jax.random.key(0)
  )
  for layer in ("conv1", "conv2", "conv3", "fc1", "fc2"):
    assert float(m[f"cos_pc_vs_bp_{layer}"]) > 0.99, (layer, float(m[f"cos_pc_vs_bp_{layer}"]))


def test_standard_update_of_a_layer_depends_only_on_its_local_quantities():
  """With the value nodes held fixed, changing the parameters of every other layer leaves a layer's update
  unchanged; changing its own parameters or its input/output nodes changes it."""
  model, v, image, labels = _standard_setup(4)
  layers = pc._standard_layers(model)
  params, stats = v["params"], v["batch_stats"]
  xs, _, _ = pc.standard_feed_forward(params, stats, image, layers=layers)
  xs = tuple(x + 0.1 * jax.random.normal(jax.random.key(i), x.shape) for i, x in enumerate(xs))
  upd = jax.jit(functools.partial(pc.standard_weight_updates, layers=layers, output_weight=1.0))
  base = upd(params, stats, xs, image, labels)
  shaken = jax.tree.map(lambda a: a * 1.7 + 0.3, params)
  for own in (("conv2", "bn2"), ("fc1",)):
    mixed = {k: (params[k] if k in own else shaken[k]) for k in params}
    got = upd(mixed, stats, xs, image, labels)
    for k in own:
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8), got[k], base[k])
  # the update of conv2 does depend on x_1 (its input) and x_2 (its output), not on x_3
  moved = (xs[0], xs[1], xs[2] + 1.0, xs[3])
  np.testing.assert_allclose(
    upd(params, stats, moved, image, labels)["conv2"]["kernel"], base["conv2"]["kernel"], rtol=1e-6, atol=1e-8
  )
  moved = (xs[0] + 0.5, xs[1], xs[2], xs[3])
  assert not np.allclose(upd(params, stats, moved, image, labels)["conv2"]["kernel"], base["conv2"]["kernel"])


def test_pc_rules_train_inside_the_vmapped_step():
  """Both variants run in the library's jitted, seed-vmapped step; reference changes W1, W2 and FC only."""
  model = models.CNN(conv_widths=(4, 8, 8), fc_width=16)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 16).astype(np.int32))
  for variant in ("reference", "standard"):
    rule = rules.create("pc", model, pc_config(variant, diagnostics=False), steps_per_epoch=2)
    keys = jnp.asarray(train.seed_key_data([0, 1]))
    state = jax.vmap(functools.partial(train.create_train_state, model=model, rule=rule, image_shape=(32, 32, 3)))(keys)
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
    before = jax.tree.map(np.asarray, state)  # the runner donates its input state
    new, metrics = train.make_epoch_runner(step, steps_per_epoch=2, driver="python")(state, images, labels)
    state = before
    assert np.all(np.isfinite(metrics["loss"])) and metrics["loss"].shape == (2,)
    moved = {
      k: not np.allclose(
        state.params[k]["kernel"] if "kernel" in state.params[k] else state.params[k]["scale"],
        new.params[k]["kernel"] if "kernel" in new.params[k] else new.params[k]["scale"],
      )
      for k in state.params
    }
    if variant == "reference":
      assert moved == {
        "conv1": True,
        "conv2": True,
        "conv3": False,
        "bn1": False,
        "bn2": False,
        "bn3": False,
        "fc1": True,
        "fc2": True,
      }
    else:
      assert all(moved.values()), moved
