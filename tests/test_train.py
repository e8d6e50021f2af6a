"""Training: BP updates, the PyTorch-equivalent optimiser, the schedule, augmentation, batching, seed vmap."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from brainalign import models, optim, rules, train
from brainalign.types import LearningRule

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
    conv_init="torch_default",
    conv_bias=False,
  )
)
SMALL = dict(conv_widths=(4, 8, 8), fc_width=16)


def _state(model, rule, seeds=(0,)):
  keys = jnp.asarray(train.seed_key_data(seeds))
  return jax.vmap(functools.partial(train.create_train_state, model=model, rule=rule, image_shape=(32, 32, 3)))(keys)


def test_bp_updates_are_the_gradient_of_cross_entropy():
  """The BP rule's updates equal jax.grad of a cross-entropy loss written independently here."""
  model = models.CNN(**SMALL)
  rule = rules.create("bp", model, BP, steps_per_epoch=2)
  v = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  x = jax.random.normal(jax.random.key(1), (6, 32, 32, 3))
  y = jnp.arange(6) % 10
  key = jax.random.key(2)

  def loss(p):
    (logits, _), _ = model.apply(
      {"params": p, "batch_stats": v["batch_stats"]}, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
    )
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(logp[jnp.arange(6), y])

  want = jax.jit(jax.grad(loss))(v["params"])
  got, _, _, metrics = jax.jit(rule.update)(
    v["params"], v["batch_stats"], rule.init(v["params"], key), {"image": x, "label": y}, key
  )
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), got, want)
  np.testing.assert_allclose(metrics["loss"], loss(v["params"]), rtol=1e-5)


def _torch_adam_reference(params, grads_seq, *, lr_seq, wd, clip, b1=0.9, b2=0.999, eps=1e-8):
  """NumPy transcription of torch.nn.utils.clip_grad_norm_ + torch.optim.Adam(weight_decay=wd)."""
  p = {k: np.array(v, np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  s = {k: np.zeros_like(v) for k, v in p.items()}
  for t, (g, lr) in enumerate(zip(grads_seq, lr_seq), start=1):
    g = {k: np.array(v, np.float64) for k, v in g.items()}
    norm = np.sqrt(sum((v**2).sum() for v in g.values()))
    scale = min(1.0, clip / (norm + 1e-6))
    for k in p:
      gk = g[k] * scale + wd * p[k]
      m[k] = b1 * m[k] + (1 - b1) * gk
      s[k] = b2 * s[k] + (1 - b2) * gk**2
      mhat, shat = m[k] / (1 - b1**t), s[k] / (1 - b2**t)
      p[k] = p[k] - lr * mhat / (np.sqrt(shat) + eps)
  return p


def test_optimizer_matches_pytorch_adam_with_l2_and_clipping():
  """optim.torch_adam reproduces PyTorch's clip -> Adam(weight_decay) update over several steps (1e-6)."""
  rng = np.random.default_rng(0)
  params = {"a": rng.normal(size=(3, 4)).astype(np.float32), "b": rng.normal(size=(5,)).astype(np.float32)}
  grads = [{k: (rng.normal(size=v.shape) * 3).astype(np.float32) for k, v in params.items()} for _ in range(5)]
  steps_per_epoch = 2
  tx = optim.torch_adam(BP, steps_per_epoch)
  p, st = {k: jnp.asarray(v) for k, v in params.items()}, None
  st = tx.init(p)
  for g in grads:
    upd, st = tx.update({k: jnp.asarray(v) for k, v in g.items()}, st, p)
    p = optax.apply_updates(p, upd)
  lrs = [1e-3 * 0.5 * (1 + np.cos(np.pi * (t // steps_per_epoch) / 4)) for t in range(5)]
  want = _torch_adam_reference(params, grads, lr_seq=lrs, wd=1e-4, clip=1.0)
  for k in params:
    np.testing.assert_allclose(p[k], want[k], rtol=1e-5, atol=1e-6)


def test_cosine_schedule_is_stepped_per_epoch():
  """lr is constant within an epoch and follows (1 + cos(pi e / T)) / 2, reaching 0 at e = T."""
  sched = optim.per_epoch_cosine(1e-3, 40, 62)
  for e in (0, 1, 20, 39, 40):
    for s in (e * 62, e * 62 + 61):
      np.testing.assert_allclose(sched(s), 1e-3 * (1 + np.cos(np.pi * e / 40)) / 2, rtol=1e-5, atol=1e-10)


def test_augmentation_is_a_crop_of_the_zero_padded_image_possibly_mirrored():
  """Every augmented image equals some 32x32 window of the 4-px zero-padded original, or its mirror (brute force)."""
  rng = np.random.default_rng(1)
  x = rng.random((6, 32, 32, 3)).astype(np.float32)
  out = np.asarray(train.augment(jax.random.key(3), jnp.asarray(x), pad=4, flip=True))
  padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
  shifts, flips = set(), set()
  for b in range(6):
    found = [
      (u, v, f)
      for u in range(9)
      for v in range(9)
      for f in (False, True)
      if np.array_equal((w := padded[b, u : u + 32, v : v + 32]) if not f else w[:, ::-1], out[b])
    ]
    assert found, f"image {b} is not a crop of its padded original"
    shifts.add(found[0][:2])
    flips.add(found[0][2])
  assert len(shifts) > 1 and flips == {False, True}  # the draws vary (6 images, 81 offsets, p(flip)=0.5)


class _Recorder:
  """A rule that trains nothing and reports the labels of each batch (labels = image ids here)."""

  @staticmethod
  def create(model):
    def init(params, key):
      return optax.EmptyState()

    def update(params, batch_stats, rule_state, batch, key):
      return (
        jax.tree.map(jnp.zeros_like, params),
        batch_stats,
        rule_state,
        {"ids": batch["label"], "loss": jnp.float32(0), "accuracy": jnp.float32(0)},
      )

    return LearningRule(init=init, update=update, optimizer=optax.set_to_zero())


def test_each_epoch_visits_a_fresh_permutation_and_drops_the_partial_batch():
  """Within an epoch no image repeats and N // B * B images are seen; epochs differ; replay is identical."""
  model = models.CNN(**SMALL)
  rule = _Recorder.create(model)
  n, b = 50, 8
  spe = n // b
  step = jax.jit(
    train.make_train_step(
      model,
      rule,
      batch_size=b,
      steps_per_epoch=spe,
      mean=np.zeros(3, np.float32),
      std=np.ones(3, np.float32),
      pad=4,
      flip=True,
    )
  )
  images = jnp.zeros((n, 32, 32, 3), jnp.uint8)
  ids = jnp.arange(n, dtype=jnp.int32)
  state = jax.tree.map(lambda a: a[0], _state(model, rule))

  def run(state, epochs):
    seen = []
    for _ in range(epochs * spe):
      state, m = step(state, images, ids)
      seen.append(np.asarray(m["ids"]))
    return state, np.stack(seen).reshape(epochs, spe * b)

  end, seen = run(state, 2)
  for e in range(2):
    assert len(set(seen[e].tolist())) == spe * b
  assert not np.array_equal(seen[0], seen[1])
  assert int(end.epoch) == 2 and int(end.step) == 2 * spe
  _, again = run(state, 2)
  np.testing.assert_array_equal(seen, again)


@pytest.mark.parametrize("driver", ["python", "scan"])
def test_vmapped_seeds_equal_seeds_trained_one_at_a_time(driver):
  """Training 2 seeds in one vmapped call gives each seed what training it alone gives, up to rounding (both
  drivers)."""
  model = models.CNN(conv_impl="im2col", **SMALL)
  rule = rules.create("bp", model, BP, steps_per_epoch=3)
  rng = np.random.default_rng(2)
  images = jnp.asarray(rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 30).astype(np.int32))
  step = train.make_train_step(
    model,
    rule,
    batch_size=8,
    steps_per_epoch=3,
    mean=np.full(3, 0.5, np.float32),
    std=np.full(3, 0.25, np.float32),
    pad=4,
    flip=True,
  )
  run = train.make_epoch_runner(step, steps_per_epoch=3, driver=driver)
  both, metrics = run(_state(model, rule, (7, 8)), images, labels)
  assert metrics["loss"].shape == (2,)
  for k, seed in enumerate((7, 8)):
    alone, _ = run(_state(model, rule, (seed,)), images, labels)
    # batch 2 vs batch 1 round differently (CPU-dependent) and Adam can magnify that near zero gradients:
    # atol 1e-4 = 10% of one Adam step of lr 1e-3 (tests/test_training_sets.py gives the reasoning)
    jax.tree.map(
      lambda a, b, k=k: np.testing.assert_allclose(a[k], b[0], rtol=1e-4, atol=1e-4), both.params, alone.params
    )


def _fa_standard_config() -> ml_collections.ConfigDict:
  """FA, standard variant, diagnostics on, a constant SGD schedule (the driver tests' rule)."""
  return ml_collections.ConfigDict(
    dict(
      variant="standard",
      conv_init="kaiming_normal",
      conv_bias=True,
      diagnostics=True,
      standard=dict(
        learning_rate=1e-2, momentum=0.9, weight_decay=1e-4, clip_norm=1.0, schedule="constant", schedule_epochs=1
      ),
    )
  )


def _step_factory(model, rule):
  """make(diagnose=False) -> the train step of batch 8, 3 steps per epoch, crop + flip (the driver tests')."""
  return functools.partial(
    train.make_train_step,
    model,
    rule,
    batch_size=8,
    steps_per_epoch=3,
    mean=np.full(3, 0.5, np.float32),
    std=np.full(3, 0.25, np.float32),
    pad=4,
    flip=True,
  )


@pytest.mark.parametrize("driver", ["python", "scan"])
def test_diagnostic_last_step_changes_nothing_but_adds_metrics_of_the_last_batch(driver):
  """An epoch whose last step asks FA for its diagnostics ends in exactly the state of a plain epoch; loss is
  the mean over the epoch's steps (oracle: the steps run one by one here), the angles come from the last step."""
  model = models.CNN(conv_impl="im2col", **SMALL)
  rule = rules.create("fa", model, _fa_standard_config(), steps_per_epoch=3)
  rng = np.random.default_rng(3)
  images = jnp.asarray(rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 24).astype(np.int32))
  make = _step_factory(model, rule)
  plain = train.make_epoch_runner(make(), steps_per_epoch=3, driver=driver)
  diag = train.make_epoch_runner(make(), steps_per_epoch=3, driver=driver, last_step=make(diagnose=True))
  start = _state(model, rule, (5, 6))
  want, want_metrics = plain(start, images, labels)
  got, metrics = diag(_state(model, rule, (5, 6)), images, labels)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), want.params, got.params)
  np.testing.assert_allclose(metrics["loss"], want_metrics["loss"], rtol=1e-6)
  assert "angle_fa_vs_bp_conv1" not in want_metrics and metrics["angle_fa_vs_bp_conv1"].shape == (2,)
  vstep, vdiag = (
    jax.jit(jax.vmap(make(), in_axes=(0, None, None))),
    jax.jit(jax.vmap(make(diagnose=True), in_axes=(0, None, None))),
  )
  st, losses = _state(model, rule, (5, 6)), []
  for _ in range(2):
    st, m = vstep(st, images, labels)
    losses.append(m["loss"])
  _, m_last = vdiag(st, images, labels)
  np.testing.assert_allclose(metrics["loss"], np.mean(losses + [m_last["loss"]], axis=0), rtol=1e-5)
  np.testing.assert_allclose(metrics["angle_fa_vs_bp_conv2"], m_last["angle_fa_vs_bp_conv2"], rtol=1e-5)


@pytest.mark.parametrize("driver", ["python", "scan"])
def test_epoch_runner_draws_the_same_shuffle_as_a_step_that_draws_its_own(driver):
  """The runners draw each seed's epoch permutation once and pass it to every step; oracle: the same BP step
  called with order=None, which draws the permutation inside every step. Two epochs, 2 seeds, per-seed data:
  the trained parameters must agree (a different batch order would change them by far more than 1e-6)."""
  model = models.CNN(conv_impl="im2col", **SMALL)
  rule = rules.create("bp", model, BP, steps_per_epoch=3)
  rng = np.random.default_rng(4)
  images = jnp.asarray(rng.integers(0, 256, (2, 26, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, (2, 26)).astype(np.int32))
  step = train.make_train_step(
    model,
    rule,
    batch_size=8,
    steps_per_epoch=3,
    mean=np.full(3, 0.5, np.float32),
    std=np.full(3, 0.25, np.float32),
    pad=4,
    flip=True,
  )
  run = train.make_epoch_runner(step, steps_per_epoch=3, driver=driver, per_seed_data=True)
  vstep = jax.jit(jax.vmap(step, in_axes=(0, 0, 0)))
  state = ref = _state(model, rule, (3, 4))
  for _ in range(2):
    for _ in range(3):
      ref, _ = vstep(ref, images, labels)
    state, _ = run(state, images, labels)
  assert int(state.step[0]) == int(ref.step[0]) == 6
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), state.params, ref.params)
  once, _ = run(_state(model, rule, (3, 4)), images, labels)
  reordered, _ = run(_state(model, rule, (3, 4)), images[:, ::-1], labels[:, ::-1])  # same data, other order
  assert (
    max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(once.params), jax.tree.leaves(reordered.params)))
    > 1e-4
  )


@pytest.mark.parametrize("per_seed_data", [False, True])
def test_turn_driver_gives_each_seed_its_one_seed_run_exactly(per_seed_data):
  """The CPU's 'turn' driver (seeds one after another) gives every seed exactly the parameters, statistics and
  metrics of the 'python' driver run on that seed alone (the same one-seed program), the diagnostic last step
  included; shared and per-seed data. And 'auto' on one CPU device is 'turn', on several 'python'."""
  model = models.CNN(conv_impl="xla", **SMALL)
  rule = rules.create("fa", model, _fa_standard_config(), steps_per_epoch=3)
  rng = np.random.default_rng(5)
  shape = (3, 24) if per_seed_data else (24,)
  images = jnp.asarray(rng.integers(0, 256, (*shape, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, shape).astype(np.int32))
  make = _step_factory(model, rule)
  kw = dict(steps_per_epoch=3, per_seed_data=per_seed_data, last_step=make(diagnose=True))
  turn = train.make_epoch_runner(make(), driver="turn", **kw)
  alone = train.make_epoch_runner(make(), driver="python", **kw)
  seeds = (11, 12, 13)
  state, metrics = turn(_state(model, rule, seeds), images, labels)
  state, metrics = turn(state, images, labels)  # a second epoch from the concatenated state
  assert metrics["loss"].shape == (3,) and metrics["angle_fa_vs_bp_conv1"].shape == (3,)
  for k, seed in enumerate(seeds):
    data = (images[k : k + 1], labels[k : k + 1]) if per_seed_data else (images, labels)
    one, m = alone(_state(model, rule, (seed,)), *data)
    one, m = alone(one, *data)
    jax.tree.map(
      lambda a, b, k=k: np.testing.assert_array_equal(np.asarray(a)[k], np.asarray(b)[0]),
      (state.params, state.batch_stats, state.opt_state),
      (one.params, one.batch_stats, one.opt_state),
    )
    for name in m:
      np.testing.assert_array_equal(metrics[name][k], m[name][0], err_msg=name)
  if jax.default_backend() == "cpu":
    assert train.resolve_driver("auto", 1) == "turn" and train.resolve_driver("auto", 2) == "python"
    assert train.seeds_per_call("auto", 5, 1) == 1 and train.seeds_per_call("auto", 4, 2) == 2
    assert models.resolve_conv_impl("auto", 1) == "xla" and models.resolve_conv_impl("auto", 2) == "im2col"
  with pytest.raises(ValueError, match="one device"):
    train.resolve_driver("turn", 2)
